-- One row per subscription and calendar month, from the month it first appears to the month
-- of `as_of`: its state at the month's end (the first instant of the next month, or `as_of`
-- for the last month). A month-end the subscription no longer existed at (deleted) counts as
-- inactive.
with as_of as (
    select as_of from {{ ref('int_ordergroove__as_of') }}
),

periods as (
    select * from {{ ref('int_ordergroove__subscription_periods') }}
),

subscriptions as (
    select
        subscription_id,
        max(customer_id) as customer_id,
        cast({{ dbt.date_trunc('month', 'min(period_start)') }} as date) as first_month
    from periods
    group by subscription_id
),

months as (
    select
        cast({{ dbt.dateadd('month', 'numbers.n', 'spine.first_month') }} as date) as month_start
    from ({{ ordergroove.numbers(1200) }}) as numbers
    cross join (select min(first_month) as first_month from subscriptions) as spine
    cross join as_of
    where {{ dbt.dateadd('month', 'numbers.n', 'spine.first_month') }} <= as_of.as_of
),

month_ends as (
    select
        months.month_start,
        case
            when cast({{ dbt.dateadd('month', 1, 'months.month_start') }} as {{ dbt.type_timestamp() }}) < as_of.as_of
            then cast({{ dbt.dateadd('month', 1, 'months.month_start') }} as {{ dbt.type_timestamp() }})
            else as_of.as_of
        end as snapshot_at
    from months
    cross join as_of
)

select
    subscriptions.subscription_id,
    subscriptions.customer_id,
    month_ends.month_start,
    month_ends.snapshot_at,
    periods.product_id,
    coalesce(periods.is_active, false) as is_active,
    case when periods.is_active then coalesce(periods.mrr, 0) else 0 end as mrr
from subscriptions
inner join month_ends
    on month_ends.month_start >= subscriptions.first_month
left join periods
    on periods.subscription_id = subscriptions.subscription_id
    and periods.period_start <= month_ends.snapshot_at
    and (periods.period_end is null or periods.period_end > month_ends.snapshot_at)
