-- One row per customer (as the API has it now): their subscriptions, orders and lifetime
-- revenue.
with subscriptions as (
    select
        customer_id,
        count(*) as subscriptions,
        sum(case when is_active then 1 else 0 end) as active_subscriptions,
        sum(case when is_active then 0 else 1 end) as cancelled_subscriptions,
        min(started_at) as first_subscription_at,
        sum(coalesce(mrr, 0)) as mrr
    from {{ ref('ordergroove__subscription_overview') }}
    group by customer_id
),

placed as (
    -- status 5: placed orders; an order whose total the API could not compute counts its
    -- parts instead
    select
        customer_id,
        count(*) as orders_placed,
        -- money stays a decimal on every warehouse (an engine may sum it as a float)
        cast(
            sum(coalesce(total, sub_total + tax_total + shipping_total))
            as {{ dbt.type_numeric() }}
        ) as lifetime_revenue,
        min(place_at) as first_order_at,
        max(place_at) as last_order_at
    from {{ ref('stg_ordergroove__orders') }}
    where status = 5
    group by customer_id
)

select
    customers.customer_id,
    customers.email,
    customers.first_name,
    customers.last_name,
    customers.live as is_live,
    customers.created_at,
    coalesce(subscriptions.subscriptions, 0) as subscriptions,
    coalesce(subscriptions.active_subscriptions, 0) as active_subscriptions,
    coalesce(subscriptions.cancelled_subscriptions, 0) as cancelled_subscriptions,
    subscriptions.first_subscription_at,
    coalesce(subscriptions.mrr, 0) as mrr,
    coalesce(placed.orders_placed, 0) as orders_placed,
    coalesce(placed.lifetime_revenue, 0) as lifetime_revenue,
    placed.first_order_at,
    placed.last_order_at
from {{ ref('stg_ordergroove__customers') }} as customers
left join subscriptions on subscriptions.customer_id = customers.customer_id
left join placed on placed.customer_id = customers.customer_id
