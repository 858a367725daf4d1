{#- Days and months are counted in one zone (the `ordergroove_timezone` variable, UTC unless
    set): every moment is turned into that zone's wall-clock time, and compared there. -#}

{% macro local_time(expression) -%}
    {{ return(adapter.dispatch('local_time', 'ordergroove')(expression)) }}
{%- endmacro %}

{% macro default__local_time(expression) -%}
    ({{ expression }} at time zone '{{ var("ordergroove_timezone", "UTC") }}')
{%- endmacro %}

{% macro snowflake__local_time(expression) -%}
    cast(convert_timezone('{{ var("ordergroove_timezone", "UTC") }}', {{ expression }}) as timestamp_ntz)
{%- endmacro %}

{% macro numbers(upper_bound) -%}
    {#- The whole numbers 0 .. upper_bound - 1, as column `n`, from cross joins of ten digits:
        plain SQL every warehouse runs, where each has its own series function. -#}
    {%- set powers = [] -%}
    {%- for _ in range(upper_bound | string | length) -%}{%- do powers.append(loop.index0) -%}{%- endfor -%}
    select n from (
        select
        {%- for p in powers %}
            {% if not loop.first %}+ {% endif %}d{{ p }}.d * {{ 10 ** p }}
        {%- endfor %} as n
        from
        {%- for p in powers %}
            (select 0 as d union all select 1 union all select 2 union all select 3
             union all select 4 union all select 5 union all select 6 union all select 7
             union all select 8 union all select 9) as d{{ p }}{% if not loop.last %} cross join{% endif %}
        {%- endfor %}
    ) as digits
    where n < {{ upper_bound }}
{%- endmacro %}
