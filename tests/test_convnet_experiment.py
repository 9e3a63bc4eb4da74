"""The `convnet_charges` experiment (the residual CNN) runs end to end with `quick=True`, and
every claim it reports holds with its negative control missing (see
`experiment_checks.check_arch_experiment`). About a minute on a 2-core CPU: one
file of its own, so that the test runner's workers share the two architecture runs."""

from experiment_checks import check_arch_experiment

from experiments import convnet_charges


def test_convnet_charges_quick_claims_hold(tmp_path):
    check_arch_experiment(convnet_charges, tmp_path)
