"""Load a DAG file and describe or run its DAGs with Airflow itself, in a process of its own
(Airflow reads its settings from the environment once, at import).

    python airflow_runner.py DAG_FILE describe   # each DAG's shape
    python airflow_runner.py DAG_FILE run        # dag.test() each DAG, then its task states

The last line printed is `RESULT <json>`, by DAG id.
"""

from __future__ import annotations

import json
import runpy
import sys
from typing import Any

from airflow.sdk import DAG


def describe(dag: DAG) -> dict[str, Any]:
    return {
        "schedule": dag.timetable.expression,  # type: ignore[attr-defined]
        "timezone": str(dag.timetable.timezone),  # type: ignore[attr-defined]
        "catchup": dag.catchup,
        "max_active_runs": dag.max_active_runs,
        "endpoints": dag.task_dict["sync"].op_kwargs_expand_input.value["endpoint"],  # type: ignore[attr-defined]
        "tasks": {
            task.task_id: {
                "pool": task.pool,
                "max_active_tis_per_dagrun": task.max_active_tis_per_dagrun,
                "retries": task.retries,
                "retry_exponential_backoff": task.retry_exponential_backoff,
                "downstream": sorted(task.downstream_task_ids),
                "mapped": hasattr(task, "expand_input"),
            }
            for task in dag.tasks
        },
    }


def run(dag: DAG) -> dict[str, Any]:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    for task in dag.tasks:  # a failure shows at once instead of waiting out the retry delays
        task.retries = 0
    dag_run = dag.test()
    names = {ti.map_index: ti.rendered_map_index for ti in dag_run.get_task_instances()}
    with create_session() as session:
        returned = {
            f"{x.task_id}[{names.get(x.map_index) or x.map_index}]": XComModel.deserialize_value(x)
            for x in session.scalars(XComModel.get_many(run_id=dag_run.run_id, key="return_value"))
        }
    return {
        "state": str(dag_run.state),
        "tasks": {
            f"{ti.task_id}[{ti.rendered_map_index or ti.map_index}]": str(ti.state)
            for ti in dag_run.get_task_instances()
        },
        "returned": returned,
    }


def main() -> None:
    path, mode = sys.argv[1], sys.argv[2]
    dags = [v for v in runpy.run_path(path).values() if isinstance(v, DAG)]
    act = describe if mode == "describe" else run
    print("RESULT " + json.dumps({dag.dag_id: act(dag) for dag in dags}))


if __name__ == "__main__":
    main()
