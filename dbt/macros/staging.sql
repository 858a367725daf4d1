{#- The generated staging models read each column through these: a column the warehouse lacks
    (a field ogsync's settings exclude, see the README's "Personal data") is staged empty,
    with its type, instead of failing the build. -#}

{% macro source_columns(table) -%}
    {#- The source table's column names, lower case (Snowflake answers in upper case). -#}
    {%- if not execute -%}
        {{ return([]) }}
    {%- endif -%}
    {%- set columns = adapter.get_columns_in_relation(source('ordergroove', table)) -%}
    {{ return(columns | map(attribute='name') | map('lower') | list) }}
{%- endmacro %}

{% macro staged_column(available, name, type) -%}
    {%- if not execute or name in available -%}
        source_rows.{{ name }}
    {%- else -%}
        cast(null as {{ type }})
    {%- endif -%}
{%- endmacro %}
