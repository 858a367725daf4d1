-- One row per cohort (the calendar month a customer's first subscription became active) and
-- month since: how many of the cohort's customers still had an active subscription at that
-- month's end, and their MRR then.
with customer_months as (
    select
        customer_id,
        month_start,
        max(case when is_active then 1 else 0 end) as is_active,
        sum(mrr) as mrr
    from {{ ref('int_ordergroove__subscription_months') }}
    where customer_id is not null
    group by customer_id, month_start
),

cohorts as (
    select
        customer_id,
        cast({{ dbt.date_trunc('month', 'min(period_start)') }} as date) as cohort_month
    from {{ ref('int_ordergroove__subscription_periods') }}
    where is_active and customer_id is not null
    group by customer_id
),

cohort_sizes as (
    select cohort_month, count(*) as cohort_customers
    from cohorts
    group by cohort_month
)

select
    cohorts.cohort_month,
    customer_months.month_start,
    {{ dbt.datediff('cohorts.cohort_month', 'customer_months.month_start', 'month') }}
        as months_since_start,
    cohort_sizes.cohort_customers,
    sum(customer_months.is_active) as active_customers,
    cast(sum(customer_months.is_active) as {{ dbt.type_numeric() }})
        / cohort_sizes.cohort_customers as retention_rate,
    sum(customer_months.mrr) as mrr
from cohorts
inner join customer_months
    on customer_months.customer_id = cohorts.customer_id
    and customer_months.month_start >= cohorts.cohort_month
inner join cohort_sizes
    on cohort_sizes.cohort_month = cohorts.cohort_month
group by cohorts.cohort_month, customer_months.month_start, cohort_sizes.cohort_customers
