"""The `transformer_charges` experiment (the pre-LN transformer classifier) runs end to end with `quick=True`, and
every claim it reports holds with its negative control missing (see
`experiment_checks.check_arch_experiment`). About a minute on a 2-core CPU: one
file of its own, so that the test runner's workers share the two architecture runs."""

from experiment_checks import check_arch_experiment

from experiments import transformer_charges


def test_transformer_charges_quick_claims_hold(tmp_path):
    check_arch_experiment(transformer_charges, tmp_path)
