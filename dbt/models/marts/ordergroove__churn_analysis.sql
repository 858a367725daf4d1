-- One row per calendar month and cancellation reason: the subscriptions cancelled that month
-- for that reason, the MRR they took with them, and how that compares with the month's start.
with periods as (
    select
        subscription_id,
        period_start,
        is_active,
        cancel_reason,
        cancel_reason_code,
        lag(is_active) over (partition by subscription_id order by period_start) as was_active,
        lag(period_end) over (partition by subscription_id order by period_start) as previous_end,
        lag(mrr) over (partition by subscription_id order by period_start) as previous_mrr
    from {{ ref('int_ordergroove__subscription_periods') }}
),

-- A cancellation: an active stretch followed at once by an inactive one.
cancellations as (
    select
        cast({{ dbt.date_trunc('month', 'period_start') }} as date) as month_start,
        cancel_reason_code,
        -- "4|Overstocked": the text after the code
        coalesce(
            nullif({{ dbt.split_part('cancel_reason', "'|'", 2) }}, ''),
            cancel_reason,
            '(no reason given)'
        ) as cancel_reason,
        coalesce(previous_mrr, 0) as churned_mrr
    from periods
    where not is_active and was_active and previous_end = period_start
),

by_reason as (
    select
        month_start,
        cancel_reason_code,
        cancel_reason,
        count(*) as cancellations,
        sum(churned_mrr) as churned_mrr
    from cancellations
    group by month_start, cancel_reason_code, cancel_reason
),

month_starts as (
    -- subscriptions active when the month began: at the end of the month before
    select
        cast({{ dbt.dateadd('month', 1, 'month_start') }} as date) as month_start,
        sum(case when is_active then 1 else 0 end) as active_at_start,
        sum(mrr) as mrr_at_start
    from {{ ref('int_ordergroove__subscription_months') }}
    group by month_start
)

select
    by_reason.month_start,
    by_reason.cancel_reason_code,
    by_reason.cancel_reason,
    by_reason.cancellations,
    by_reason.churned_mrr,
    sum(by_reason.cancellations) over (partition by by_reason.month_start)
        as month_cancellations,
    coalesce(month_starts.active_at_start, 0) as active_at_start,
    coalesce(month_starts.mrr_at_start, 0) as mrr_at_start,
    cast(by_reason.cancellations as {{ dbt.type_numeric() }})
        / nullif(month_starts.active_at_start, 0) as cancellation_rate
from by_reason
left join month_starts
    on month_starts.month_start = by_reason.month_start
