"""The benchmark harness: utilisation arithmetic, vendor peaks, and one real (tiny) run of `patchscale bench`."""

import json

import pytest

from patchscale import bench
from tests.conftest import DEFAULT_EXPERIMENT, run_cli


def test_utilisation_against_a_hand_computed_case():
    # 2 TFLOP per step in 0.5 s is 4 TFLOP/s; against a 16 TFLOP/s peak that is 25%.
    assert bench.utilisation(2e12, 0.5, 16e12) == pytest.approx(0.25)
    assert bench.utilisation(2e12, 0.5, None) is None


def test_vendor_peaks_by_device_kind():
    assert bench.vendor_peak_flops("NVIDIA H100 80GB HBM3", "bfloat16") == pytest.approx(989.4e12)
    assert bench.vendor_peak_flops("TPU v5 lite", "bfloat16") == pytest.approx(197e12)
    assert bench.vendor_peak_flops("TPU v5p", "bfloat16") == pytest.approx(459e12)  # Not v5e's.
    assert bench.vendor_peak_flops("cpu", "float32") is None


@pytest.mark.heavy
def test_bench_command_writes_a_complete_result(tmp_path, mnist_dir):
    out = tmp_path / "b.json"
    done = run_cli("bench", DEFAULT_EXPERIMENT, "model.size=pico", "model.patch_size=8", "train.batch_size=8",
                   f"data.data_dir={mnist_dir}",
                   "--steps", "3", "--warmup", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    row = json.loads(out.read_text())
    assert row["tokens_per_image"] == 17 and row["step_repeats"] == 3
    assert row["step_min_s"] <= row["step_median_s"] <= row["step_max_s"]
    # The analytic model FLOPs the utilisation is based on agree with XLA's count of the compiled
    # step (which adds the optimizer and elementwise work: a few percent at this tiny width).
    assert row["model_flops_per_step"] == pytest.approx(row["xla_flops_per_step"], rel=0.25)
    assert 0 < row["utilisation_measured_peak"] < 1
    assert row["temp_bytes"] > 0 and row["git_commit"] and row["command"].startswith("patchscale bench")
    assert row["input_images_per_s"] > 0  # The host pipeline's own rate, next to the step's.
    assert "of measured peak" in done.stdout


class _Compiled:
    """Stands in for a compiled executable: its HLO text and XLA's cost analysis."""

    def __init__(self, text, flops):
        self.text, self.flops = text, flops

    def as_text(self):
        return self.text

    def cost_analysis(self):
        return {"flops": self.flops}


def test_xla_flops_are_unknown_when_library_calls_hide_work():
    gpu = _Compiled('%c = custom-call(%a, %b), custom_call_target="__cublas$lt$matmul"\n'
                    '%f = custom-call(%q), custom_call_target="__cudnn$fmhaSoftmax"', 6e11)
    row = bench.xla_cost(gpu)
    assert row["xla_flops_per_step"] is None and row["xla_flops_lower_bound"] == 6e11
    assert row["xla_uncounted_calls"] == ["__cublas$lt$matmul", "__cudnn$fmhaSoftmax"]
    # A program of plain HLO ops (a custom call XLA can count, e.g. a sort helper, does not count).
    plain = _Compiled('%d = f32[8,8] dot(%a, %b)\n%s = custom-call(%x), custom_call_target="TopK"', 1024.0)
    assert bench.xla_cost(plain) == {"xla_flops_per_step": 1024.0}


def test_xla_flops_of_a_real_cpu_program_are_counted():
    import jax
    import jax.numpy as jnp

    compiled = jax.jit(lambda a: a @ a).lower(jnp.ones((64, 64))).compile()
    assert bench.xla_cost(compiled)["xla_flops_per_step"] == pytest.approx(2 * 64**3, rel=0.05)
