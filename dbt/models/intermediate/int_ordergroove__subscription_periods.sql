-- One row per stretch of time a subscription spent in one state (active or not, at one
-- quantity, price and frequency), in the marts' zone: [period_start, period_end), the last one
-- open (period_end empty).
--
-- From the history table: each version a sync saw lasts from its update time until the next
-- version's (or its deletion). Before the first version ogsync saw (a subscription older
-- than the first sync), the subscription's own dates say what it was: active from `created`
-- until `cancelled` (or until that version, if it is live), inactive from then on; its
-- quantity, price and frequency are the first version's, the earliest known.
with versions as (
    select
        subscription_id,
        customer_id,
        product_id,
        coalesce(live, false) as is_live,
        quantity,
        price,
        every,
        every_period,
        frequency_days,
        cancel_reason,
        cancel_reason_code,
        {{ ordergroove.local_time('created_at') }} as created_at,
        {{ ordergroove.local_time('cancelled_at') }} as cancelled_at,
        {{ ordergroove.local_time('valid_from') }} as valid_from,
        {{ ordergroove.local_time('valid_to') }} as valid_to,
        row_number() over (
            partition by subscription_id
            -- two versions stamped alike: the one that lasted no time came first
            order by valid_from, case when valid_to is null then 1 else 0 end, valid_to
        ) as version_number
    from {{ ref('stg_ordergroove__subscriptions_history') }}
    where valid_from is not null
),

first_versions as (
    select
        versions.*,
        case
            when is_live then valid_from
            when cancelled_at > created_at and cancelled_at < valid_from then cancelled_at
            when cancelled_at > created_at then valid_from
            else created_at
        end as active_until
    from versions
    where version_number = 1 and created_at < valid_from
),

periods as (
    select
        subscription_id, customer_id, product_id, quantity, price, every, every_period,
        frequency_days, cancel_reason, cancel_reason_code,
        created_at as period_start,
        active_until as period_end,
        true as is_active,
        'before_history' as known_from
    from first_versions
    where active_until > created_at

    union all

    select
        subscription_id, customer_id, product_id, quantity, price, every, every_period,
        frequency_days, cancel_reason, cancel_reason_code,
        active_until as period_start,
        valid_from as period_end,
        false as is_active,
        'before_history' as known_from
    from first_versions
    where valid_from > active_until

    union all

    select
        subscription_id, customer_id, product_id, quantity, price, every, every_period,
        frequency_days, cancel_reason, cancel_reason_code,
        valid_from as period_start,
        valid_to as period_end,
        is_live as is_active,
        'history' as known_from
    from versions
    where valid_to is null or valid_to > valid_from
),

priced as (
    select
        periods.*,
{%- if var('ordergroove_using_products', true) %}
        coalesce(periods.price, products.price) as unit_price,
        case
            when periods.price is not null then 'subscription'
            when products.price is not null then 'product'
        end as price_source,
{%- else %}
        periods.price as unit_price,
        case when periods.price is not null then 'subscription' end as price_source,
{%- endif %}
        -- days between orders: `every` periods of a day, a week or a month (30.4375 days,
        -- a 365.25-day year over twelve); `frequency_days` when the period is not one of these
        coalesce(
            case periods.every_period
                when 1 then periods.every * 1.0
                when 2 then periods.every * 7.0
                when 3 then periods.every * 30.4375
            end,
            periods.frequency_days * 1.0
        ) as interval_days
    from periods
{%- if var('ordergroove_using_products', true) %}
    left join {{ ref('stg_ordergroove__products') }} as products
        on products.product_id = periods.product_id
{%- endif %}
)

select
    subscription_id,
    customer_id,
    product_id,
    period_start,
    period_end,
    is_active,
    known_from,
    quantity,
    unit_price,
    price_source,
    every,
    every_period,
    interval_days,
    case
        when not is_active then 0
        else quantity * unit_price * 30.4375 / nullif(interval_days, 0)
    end as mrr,
    cancel_reason,
    cancel_reason_code
from priced
