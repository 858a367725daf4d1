-- One row per calendar month and product: subscriptions active at the month's end, their MRR,
-- and how it moved since the month before (definitions in the model's docs).
with subscription_months as (
    select
        subscription_id,
        month_start,
        product_id,
        is_active,
        mrr,
        lag(product_id) over (partition by subscription_id order by month_start)
            as previous_product_id,
        coalesce(lag(is_active) over (partition by subscription_id order by month_start), false)
            as was_active,
        coalesce(lag(mrr) over (partition by subscription_id order by month_start), 0)
            as previous_mrr,
        -- active at some earlier month's end on this product: coming back is a reactivation
        coalesce(max(case when is_active then 1 else 0 end) over (
            partition by subscription_id, product_id
            order by month_start
            rows between unbounded preceding and 1 preceding
        ), 0) as was_ever_active
    from {{ ref('int_ordergroove__subscription_months') }}
),

compared as (
    select
        subscription_months.*,
        case
            when was_active and previous_product_id = product_id then true else false
        end as continues
    from subscription_months
),

-- Each subscription's month, on its product now ...
movements as (
    select
        month_start,
        product_id,
        case when is_active then 1 else 0 end as active_subscriptions,
        mrr,
        case when continues then previous_mrr else 0 end as previous_mrr,
        case when is_active and not continues and was_ever_active = 0 then mrr else 0 end
            as new_mrr,
        case when is_active and continues and mrr > previous_mrr then mrr - previous_mrr else 0 end
            as expansion_mrr,
        case when is_active and continues and mrr < previous_mrr then previous_mrr - mrr else 0 end
            as contraction_mrr,
        case when not is_active and continues then previous_mrr else 0 end as churned_mrr,
        case when is_active and not continues and was_ever_active = 1 then mrr else 0 end
            as reactivated_mrr,
        case when is_active and not continues and was_ever_active = 0 then 1 else 0 end
            as new_subscriptions,
        case when not is_active and continues then 1 else 0 end as churned_subscriptions,
        case when is_active and not continues and was_ever_active = 1 then 1 else 0 end
            as reactivated_subscriptions
    from compared
    where product_id is not null

    union all

    -- ... and on the product it left (moved to another one, or deleted): churned there
    select
        month_start,
        previous_product_id as product_id,
        0 as active_subscriptions,
        0 as mrr,
        previous_mrr,
        0 as new_mrr,
        0 as expansion_mrr,
        0 as contraction_mrr,
        previous_mrr as churned_mrr,
        0 as reactivated_mrr,
        0 as new_subscriptions,
        1 as churned_subscriptions,
        0 as reactivated_subscriptions
    from compared
    where was_active and (product_id is null or product_id <> previous_product_id)
),

by_month as (
    select
        month_start,
        product_id,
        sum(active_subscriptions) as active_subscriptions,
        sum(mrr) as mrr,
        sum(previous_mrr) as previous_mrr,
        sum(new_mrr) as new_mrr,
        sum(expansion_mrr) as expansion_mrr,
        sum(contraction_mrr) as contraction_mrr,
        sum(churned_mrr) as churned_mrr,
        sum(reactivated_mrr) as reactivated_mrr,
        sum(new_subscriptions) as new_subscriptions,
        sum(churned_subscriptions) as churned_subscriptions,
        sum(reactivated_subscriptions) as reactivated_subscriptions
    from movements
    group by month_start, product_id
)

select
    by_month.month_start,
    by_month.product_id,
{%- if var('ordergroove_using_products', true) %}
    products.name as product_name,
{%- else %}
    cast(null as {{ dbt.type_string() }}) as product_name,
{%- endif %}
    by_month.active_subscriptions,
    by_month.mrr,
    by_month.previous_mrr,
    by_month.new_mrr,
    by_month.expansion_mrr,
    by_month.contraction_mrr,
    by_month.churned_mrr,
    by_month.reactivated_mrr,
    by_month.new_subscriptions,
    by_month.churned_subscriptions,
    by_month.reactivated_subscriptions
from by_month
{%- if var('ordergroove_using_products', true) %}
left join {{ ref('stg_ordergroove__products') }} as products
    on products.product_id = by_month.product_id
{%- endif %}
-- a product with nothing active and nothing moving that month has no row
where by_month.active_subscriptions > 0
    or by_month.previous_mrr <> 0
    or by_month.new_subscriptions + by_month.churned_subscriptions
        + by_month.reactivated_subscriptions > 0
