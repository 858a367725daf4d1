-- One row per subscription and day it existed (from its creation to `as_of`, unless deleted):
-- its state at the end of that day, active or not, with its MRR then.
with as_of as (
    select as_of, as_of_date from {{ ref('int_ordergroove__as_of') }}
),

periods as (
    select * from {{ ref('int_ordergroove__subscription_periods') }}
),

days as (
    select
        cast({{ dbt.dateadd('day', 'numbers.n', 'spine.first_day') }} as date) as date_day
    from ({{ ordergroove.numbers(100000) }}) as numbers
    cross join (select cast(min(period_start) as date) as first_day from periods) as spine
    cross join as_of
    where {{ dbt.dateadd('day', 'numbers.n', 'spine.first_day') }} <= as_of.as_of_date
),

day_ends as (
    select
        days.date_day,
        case
            when cast({{ dbt.dateadd('day', 1, 'days.date_day') }} as {{ dbt.type_timestamp() }}) < as_of.as_of
            then cast({{ dbt.dateadd('day', 1, 'days.date_day') }} as {{ dbt.type_timestamp() }})
            else as_of.as_of
        end as snapshot_at
    from days
    cross join as_of
)

select
    day_ends.date_day,
    periods.subscription_id,
    periods.customer_id,
    periods.product_id,
    periods.is_active,
    case when periods.is_active then 'active' else 'inactive' end as status,
    periods.quantity,
    periods.unit_price,
    periods.interval_days,
    case when periods.is_active then coalesce(periods.mrr, 0) else 0 end as mrr
from day_ends
inner join periods
    on periods.period_start <= day_ends.snapshot_at
    and (periods.period_end is null or periods.period_end > day_ends.snapshot_at)
