-- The moment the marts describe, in the marts' zone: the latest change ogsync has synced (of a
-- subscription, an order or a customer), or the `ordergroove_as_of` variable when it is set.
-- Not the clock: a mart built a week after the last sync still ends where the data ends.
{%- if var('ordergroove_as_of', none) %}
select
    cast('{{ var("ordergroove_as_of") }}' as {{ dbt.type_timestamp() }}) as as_of,
    cast(cast('{{ var("ordergroove_as_of") }}' as {{ dbt.type_timestamp() }}) as date) as as_of_date
{%- else %}
with latest_changes as (
    select max(updated_at) as changed_at from {{ ref('stg_ordergroove__subscriptions') }}
    union all
    select max(updated_at) from {{ ref('int_ordergroove__orders_with_deleted') }}
    union all
    select max(updated_at) from {{ ref('stg_ordergroove__customers') }}
)

select
    max({{ ordergroove.local_time('changed_at') }}) as as_of,
    cast(max({{ ordergroove.local_time('changed_at') }}) as date) as as_of_date
from latest_changes
{%- endif %}
