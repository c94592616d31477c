"""Private segments without Spark: what the analysis refuses, and what the release draws.

The distribution test samples the calibrated OpenDP mechanism many times and checks the noise against the
discrete Laplace distribution the ε and the sensitivity configure: its mean, its variance, the probability
of no noise, and the ratio P(0)/P(1) = exp(ε/Δ) that *is* the privacy loss. Each bound is six standard
errors wide: a correct mechanism fails one of them about once in 10^8 runs, whatever the seed, and a
mechanism off by the factor that matters (noise for 2ε, or none) fails them all."""

from __future__ import annotations

import json
import math

import pytest

from sidecars.analytics import dp
from sidecars.analytics.documents import (
    AnalyticsDocumentError,
    PrivacyRefused,
    parse_dataset,
    parse_query,
    privacy_spend,
)

SCHEMA = [("person", "string"), ("city", "string"), ("amount", "int"), ("secret", "string")]


def dataset(name="shop", *, privacy=None, mode="aggregate"):
    document = {"name": name, "owner": "northwind", "store": "s", "container": "s", "format": "csv",
                "schema": [{"name": n, "type": t} for n, t in SCHEMA],
                "allowedFields": ["person", "city", "amount"], "accessMode": mode, "encryption": {"mode": "SSE"}}
    if privacy is not False:
        document["privacy"] = privacy or {"epsilonTotal": 3, "delta": 1e-6, "perQueryEpsilonMax": 1,
                                          "contributionBound": 2, "personKey": "person"}
    return parse_dataset(json.dumps(document))


def segment(sql, *, epsilon=0.5, keys=None, bounds=None, **extra):
    return {"executionSequence": 1, "sql": sql, "private": True, "epsilon": epsilon,
            "publicKeys": keys if keys is not None else {"city": ["paris", "oslo", "lima"]},
            "bounds": bounds if bounds is not None else {"amount": [0, 100]}, **extra}


def query(*segments, inputs=(("shop", "sales"),)):
    return parse_query(json.dumps({
        "inputDatasets": [{"datasetName": d, "viewName": v} for d, v in inputs],
        "outputDataset": {"datasinkName": "sink"}, "segments": list(segments)}))


def plan(sql, **kwargs):
    [private] = query(segment(sql, **kwargs)).segments
    return dp.plan_private(private, {"sales": dataset()})


# --- documents ----------------------------------------------------------------------------------------------

def test_a_privacy_policy_and_a_private_segment_parse_with_epsilon_in_millionths():
    shop = dataset()
    assert shop.privacy.epsilon_total == 3_000_000 and shop.privacy.per_query_epsilon_max == 1_000_000
    assert (shop.privacy.contribution_bound, shop.privacy.person_key) == (2, "person")
    q = query(segment("SELECT city, COUNT(*) AS n FROM sales GROUP BY city", epsilon=0.1))
    assert q.segments[0].private and q.epsilon == 100_000
    assert privacy_spend(q, {"shop": shop}) == {"shop": 100_000}


@pytest.mark.parametrize("privacy, problem", [
    ({"epsilonTotal": 1, "perQueryEpsilonMax": 1, "contributionBound": 1, "personKey": "secret"},
     "privacy.personKey: 'secret' is not one of allowedFields"),
    ({"epsilonTotal": 1, "perQueryEpsilonMax": 0.1234567, "contributionBound": 1, "personKey": "person"},
     "privacy.perQueryEpsilonMax: at most 6 decimal places"),
    ({"epsilonTotal": -1, "perQueryEpsilonMax": 1, "contributionBound": 1, "personKey": "person"},
     "privacy.epsilonTotal: must be a number from 0 up to 100"),
    ({"epsilonTotal": 1, "perQueryEpsilonMax": 1, "contributionBound": 0, "personKey": "person"},
     "privacy.contributionBound: must be an integer from 1 to 10000"),
    ({"epsilonTotal": 1, "perQueryEpsilonMax": 1, "contributionBound": 1, "personKey": "person", "delta": 0.5},
     "privacy.delta: must be a number from 0 to below 0.001"),
])
def test_a_bad_privacy_policy_is_refused_naming_its_field(privacy, problem):
    with pytest.raises(AnalyticsDocumentError) as refused:
        dataset(privacy=privacy)
    assert problem in refused.value.message


def test_a_private_segment_may_not_carry_pre_conditions_and_a_plain_one_no_epsilon():
    with pytest.raises(AnalyticsDocumentError, match="a private segment has none"):
        query(segment("SELECT COUNT(*) AS n FROM sales", preConditions=[{"viewName": "sales", "minRowCount": 5}]))
    with pytest.raises(AnalyticsDocumentError, match=r"segments\[0\]\.epsilon: only a private segment"):
        query({"executionSequence": 1, "sql": "SELECT 1", "epsilon": 1})


def test_a_plain_segment_over_a_private_dataset_and_too_much_epsilon_are_refused():
    shop = dataset()
    plain = query({"executionSequence": 1, "sql": "SELECT city, COUNT(*) AS n FROM sales GROUP BY city"})
    with pytest.raises(PrivacyRefused, match="segment 1 is not private, and dataset 'shop' allows private"):
        privacy_spend(plain, {"shop": shop})
    greedy = query(segment("SELECT COUNT(*) AS n FROM sales", epsilon=0.6),
                   {**segment("SELECT COUNT(*) AS m FROM sales", epsilon=0.6), "executionSequence": 2})
    with pytest.raises(PrivacyRefused, match="spends epsilon 1.2 per run; dataset 'shop' allows at most 1"):
        privacy_spend(greedy, {"shop": shop})


def test_over_several_datasets_the_strictest_owner_wins():
    strict = dataset("bank", privacy={"epsilonTotal": 5, "perQueryEpsilonMax": 0.25, "contributionBound": 1,
                                      "personKey": "person"})
    q = query(segment("SELECT COUNT(*) AS n FROM sales", epsilon=0.5),
              inputs=(("shop", "sales"), ("bank", "accounts")))
    with pytest.raises(PrivacyRefused, match="dataset 'bank' allows at most 0.25"):
        privacy_spend(q, {"shop": dataset(), "bank": strict})


# --- the analysis -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sql, refusal", [
    ("SELECT city, MAX(amount) AS m FROM sales GROUP BY city", "releases COUNT, SUM and AVG"),
    ("SELECT city, COUNT(DISTINCT person) AS m FROM sales GROUP BY city", "releases COUNT, SUM and AVG"),
    ("SELECT city, COUNT(*) AS n FROM sales GROUP BY city HAVING COUNT(*) > 3", "HAVING is not supported"),
    ("SELECT city, COUNT(*) AS n FROM sales GROUP BY city ORDER BY n", "ORDER is not supported"),
    ("SELECT city, COUNT(*) AS n FROM sales GROUP BY city LIMIT 1", "LIMIT is not supported"),
    ("SELECT person, COUNT(*) AS n FROM sales GROUP BY person", "column 'person' has no public key set"),
    ("SELECT COUNT(*) AS n FROM sales", "publicKeys column 'city' is not grouped by"),
    ("SELECT city, SUM(amount * 2) AS s FROM sales GROUP BY city", "aggregates take a plain column"),
    ("SELECT city, COUNT(*) AS n FROM (SELECT * FROM sales) x GROUP BY city", "must read one of the query's views"),
    ("SELECT a.city, COUNT(*) AS n FROM sales a JOIN sales b ON a.person = b.person GROUP BY a.city",
     "JOINS is not supported"),
    ("SELECT city, COUNT(*) OVER () AS n FROM sales GROUP BY city", "releases COUNT, SUM and AVG"),
    ("SELECT city, COUNT(*) AS n FROM sales WHERE amount > (SELECT AVG(amount) FROM sales) GROUP BY city",
     "WHERE holds SUBQUERY"),
    # each of these fails a run on one value in ANSI mode: a failure is an answer no ε pays for
    ("SELECT city, COUNT(*) AS n FROM sales WHERE 1 / (amount - 42) > 0 GROUP BY city", "WHERE holds DIV"),
    ("SELECT city, COUNT(*) AS n FROM sales WHERE CAST(person AS INT) > 0 GROUP BY city", "CAST; a private segment"),
    ("SELECT city, COUNT(*) AS n FROM sales WHERE element_at(array(1), amount) > 0 GROUP BY city",
     "compares columns with constants only"),
    ("SELECT city, SUM(person) AS s FROM sales GROUP BY city", "column 'person' is not numeric"),
    ("SELECT city, COUNT(*) AS n FROM sales GROUP BY city UNION SELECT city, 1 FROM sales", "must be one SELECT"),
    ("SELECT city, amount, COUNT(*) AS n FROM sales GROUP BY city, amount", "'amount' has no public key set"),
])
def test_what_the_mechanism_cannot_cover_is_refused_naming_the_clause(sql, refusal):
    with pytest.raises(dp.PrivateSegmentRefused) as refused:
        plan(sql)
    assert refusal in refused.value.message
    assert "\n" not in refused.value.message


def test_sum_and_avg_need_bounds_and_a_dataset_without_a_policy_cannot_be_private():
    with pytest.raises(dp.PrivateSegmentRefused, match="column 'amount' has no bounds"):
        plan("SELECT city, SUM(amount) AS s FROM sales GROUP BY city", bounds={})
    with pytest.raises(dp.PrivateSegmentRefused, match="column 'person' is not numeric"):
        plan("SELECT city, AVG(person) AS s FROM sales GROUP BY city", bounds={"person": [0, 1]})
    [private] = query(segment("SELECT city, COUNT(*) AS n FROM sales GROUP BY city")).segments
    with pytest.raises(dp.PrivateSegmentRefused, match="dataset 'shop' has no privacy policy"):
        dp.plan_private(private, {"sales": dataset(privacy=False)})


def test_the_rewrite_bounds_contributions_per_person_and_keeps_the_public_keys_only():
    private = plan("SELECT city, COUNT(*) AS n, AVG(amount) AS mean FROM sales s "
                   "WHERE amount > 1 AND NOT (city IN ('x') OR person IS NULL) GROUP BY city")
    assert "ROW_NUMBER() OVER (PARTITION BY `s`.`person` ORDER BY `s`.`_ccr_row_id` NULLS LAST)" in private.sql
    assert "`s`.`_ccr_rank` <= 2" in private.sql
    assert "`s`.`city` IN ('paris', 'oslo', 'lima')" in private.sql
    assert "LEAST(GREATEST(CAST(`s`.`amount` AS DOUBLE), 0.0), 100.0)" in private.sql
    assert [m.kind for m in private.measures] == ["count", "sum", "count"]
    assert private.epsilon_per_measure == pytest.approx(0.5 / 3)


# --- the release ----------------------------------------------------------------------------------------------

def test_every_public_key_is_released_with_noise_and_the_average_stays_in_its_bounds():
    private = plan("SELECT city, COUNT(*) AS n, AVG(amount) AS mean FROM sales GROUP BY city", epsilon=1)
    exact = [{"_ccr_key0": "paris", "_ccr_measure0": 40, "_ccr_measure1": 2000.0, "_ccr_measure2": 40}]
    rows = dp.release(private, exact)
    assert [row["city"] for row in rows] == ["paris", "oslo", "lima"]
    assert all(isinstance(row["n"], int) and 0 <= row["mean"] <= 100 for row in rows)


def test_post_filters_apply_to_the_noisy_values():
    private = plan("SELECT city, COUNT(*) AS n FROM sales GROUP BY city", epsilon=1,
                   postFilters=[{"columnName": "n", "value": 1000}])
    exact = [{"_ccr_key0": "paris", "_ccr_measure0": 100_000}]
    assert [row["city"] for row in dp.release(private, exact)] == ["paris"]


def test_the_noise_of_a_private_count_is_the_discrete_laplace_its_epsilon_configures():
    epsilon, bound = 0.5, 2
    private = plan("SELECT city, COUNT(*) AS n FROM sales GROUP BY city", epsilon=epsilon)
    [count] = private.measures
    assert dp.sensitivity(private, count) == bound
    release = dp.mechanism(private, count)
    samples = 200_000
    true_count = 1234
    noise = [value - true_count for value in release([true_count] * samples)]
    # discrete Laplace with scale Δ/ε: P(k) ∝ t^|k|, t = exp(-ε/Δ)
    t = math.exp(-epsilon / bound)
    variance = 2 * t / (1 - t) ** 2
    mean = sum(noise) / samples
    assert abs(mean) < 6 * math.sqrt(variance / samples)
    empirical_variance = sum(k * k for k in noise) / samples
    # the standard error of the empirical variance needs E[k⁴], summed from the distribution itself
    fourth = 2 * sum(k ** 4 * t ** k for k in range(1, 2000)) * (1 - t) / (1 + t)
    assert abs(empirical_variance - variance) < 6 * math.sqrt((fourth - variance ** 2) / samples)
    p0 = (1 - t) / (1 + t)
    zeros, ones = noise.count(0), noise.count(1)
    assert abs(zeros / samples - p0) < 6 * math.sqrt(p0 * (1 - p0) / samples)
    # the privacy loss between neighbouring outputs: ln P(0)/P(1) = ε/Δ, checked within its standard error
    log_ratio = math.log(zeros / ones)
    standard_error = math.sqrt(1 / zeros + 1 / ones)
    assert abs(log_ratio - epsilon / bound) < 6 * standard_error
    # and not the noise for twice the ε (or half): those are well outside the same bound
    assert abs(log_ratio - 2 * epsilon / bound) > 6 * standard_error
    assert abs(log_ratio - epsilon / bound / 2) > 6 * standard_error


def test_a_clamped_sum_gets_laplace_noise_of_scale_bound_times_range_over_its_epsilon_share():
    private = plan("SELECT city, SUM(amount) AS s FROM sales GROUP BY city", epsilon=1, bounds={"amount": [-10, 50]})
    [total] = private.measures
    assert dp.sensitivity(private, total) == 2 * 50
    samples = 100_000
    noise = [value - 500.0 for value in dp.mechanism(private, total)([500.0] * samples)]
    scale = 100 / 1.0
    # Laplace(b): mean 0, variance 2b², E|X| = b
    assert abs(sum(noise) / samples) < 6 * math.sqrt(2 * scale ** 2 / samples)
    mean_abs = sum(abs(x) for x in noise) / samples
    assert abs(mean_abs - scale) < 6 * scale / math.sqrt(samples)
