-- One row per subscription (as the API has it now): its customer, product, price in effect,
-- frequency, status, start, cancellation and reason, and the orders placed for it so far.
with subscriptions as (
    select * from {{ ref('stg_ordergroove__subscriptions') }}
),

current_periods as (
    select subscription_id, unit_price, price_source, interval_days, mrr
    from {{ ref('int_ordergroove__subscription_periods') }}
    where period_end is null
),

items as (
    select * from {{ ref('stg_ordergroove__items') }}
),

orders as (
    select * from {{ ref('stg_ordergroove__orders') }}
),

placed as (
    -- status 5: the order was placed (its items were sold)
    select
        items.subscription_id,
        count(distinct orders.order_id) as orders_placed,
        -- money stays a decimal on every warehouse (an engine may sum it as a float)
        cast(sum(items.total_price) as {{ dbt.type_numeric() }}) as revenue_to_date,
        min(orders.place_at) as first_order_at,
        max(orders.place_at) as last_order_at
    from items
    inner join orders on orders.order_id = items.order_id
    where orders.status = 5
    group by items.subscription_id
),

upcoming as (
    -- status 1: unsent, the next order waiting to be placed
    select items.subscription_id, min(orders.place_at) as next_order_at
    from items
    inner join orders on orders.order_id = items.order_id
    where orders.status = 1
    group by items.subscription_id
)

select
    subscriptions.subscription_id,
    subscriptions.customer_id,
    customers.email as customer_email,
    subscriptions.product_id,
{%- if var('ordergroove_using_products', true) %}
    products.name as product_name,
{%- else %}
    cast(null as {{ dbt.type_string() }}) as product_name,
{%- endif %}
    subscriptions.quantity,
    current_periods.unit_price,
    current_periods.price_source,
    subscriptions.every,
    subscriptions.every_period,
    subscriptions.every_period_label,
    current_periods.interval_days,
    current_periods.mrr,
    case when subscriptions.live then 'active' else 'cancelled' end as status,
    subscriptions.live as is_active,
    subscriptions.created_at as started_at,
    subscriptions.start_date,
    subscriptions.cancelled_at,
    subscriptions.cancel_reason_code,
    coalesce(
        nullif({{ dbt.split_part('subscriptions.cancel_reason', "'|'", 2) }}, ''),
        subscriptions.cancel_reason
    ) as cancel_reason,
    coalesce(placed.orders_placed, 0) as orders_placed,
    coalesce(placed.revenue_to_date, 0) as revenue_to_date,
    placed.first_order_at,
    placed.last_order_at,
    upcoming.next_order_at
from subscriptions
left join current_periods on current_periods.subscription_id = subscriptions.subscription_id
left join {{ ref('stg_ordergroove__customers') }} as customers
    on customers.customer_id = subscriptions.customer_id
{%- if var('ordergroove_using_products', true) %}
left join {{ ref('stg_ordergroove__products') }} as products
    on products.product_id = subscriptions.product_id
{%- endif %}
left join placed on placed.subscription_id = subscriptions.subscription_id
left join upcoming on upcoming.subscription_id = subscriptions.subscription_id
