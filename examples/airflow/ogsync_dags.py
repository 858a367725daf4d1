"""ogsync on Airflow: put this file and ogsync.toml in the DAGs folder.

Gives one DAG per merchant of ogsync.toml (`ogsync_<merchant>`): the webhook deletions
applied first, then one task per endpoint, at most five at once, in the pool
`ogsync_<merchant>`. Create each pool once:

    airflow pools set ogsync_my-store 5 "ogsync: my-store's endpoints"

The scheduler and the workers need ogsync with the extras this file and ogsync.toml use,
`pip install 'ogsync[airflow,postgres]'`, and the workers the variables ogsync.toml names (the
API keys).
"""

from pathlib import Path

from ogsync.airflow import ogsync_dags

globals().update(ogsync_dags(Path(__file__).with_name("ogsync.toml")))
