-- One row per order line (item) ogsync has synced, deleted ones included: the line, its order,
-- and whether and why either was deleted.
with items as (
    select * from {{ ref('int_ordergroove__items_with_deleted') }}
),

orders as (
    select * from {{ ref('int_ordergroove__orders_with_deleted') }}
)

select
    items.item_id,
    items.order_id,
    orders.customer_id,
    items.subscription_id,
    items.product_id,
    orders.status as order_status,
    orders.status_label as order_status_label,
    orders.place_at,
    orders.created_at as order_created_at,
    items.quantity,
    items.price,
    items.total_price,
    items.one_time as is_one_time,
    -- the one answer to "which orders were deleted": those ogsync soft-deleted
    orders.deleted_at is not null as is_order_deleted,
    orders.deleted_at as order_deleted_at,
    orders.deleted_reason as order_deletion_reason,
    items.deleted_at is not null as is_deleted,
    items.deleted_at,
    items.deleted_reason as deletion_reason
from items
left join orders on orders.order_id = items.order_id
