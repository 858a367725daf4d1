{#- Generic tests the package's YAML uses, so that it needs no other package. -#}

{% test ordergroove_unique_combination(model, columns) %}
    {#- No two rows share the values of these columns (a composite key). -#}
    select {{ columns | join(', ') }}, count(*) as rows_with_these_values
    from {{ model }}
    group by {{ columns | join(', ') }}
    having count(*) > 1
{% endtest %}

{% test ordergroove_mrr_adds_up(model) %}
    {#- Each month's MRR is the month before's plus what was won, less what was lost. -#}
    select *
    from {{ model }}
    where abs(
        previous_mrr + new_mrr + expansion_mrr + reactivated_mrr
        - contraction_mrr - churned_mrr - mrr
    ) > 0.01
{% endtest %}

{% test ordergroove_one_row(model) %}
    {#- The model holds exactly one row. -#}
    select count(*) as rows_found
    from {{ model }}
    having count(*) <> 1
{% endtest %}
