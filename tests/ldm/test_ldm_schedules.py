"""A checkpoint's scheduler_config.json becomes the denoiser's schedule, spacing and offset."""

from __future__ import annotations

import pytest
from latentgraph.nodes.common.files import CheckpointError
from latentgraph.nodes.common.schedules import SD15, discrete_schedule, flow_schedule
from latentgraph.nodes.diffusion.math import SANA_SCHEDULE

# runwayml/stable-diffusion-v1-5's file as published: no timestep_spacing key.
SD15_PUBLISHED = {
    "_class_name": "PNDMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "num_train_timesteps": 1000,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
    "clip_sample": False,
}


def test_sd15_config_is_leading_with_offset_one():
    assert discrete_schedule(SD15_PUBLISHED, "test") == SD15


def test_stated_spacing_and_zero_terminal_snr():
    config = {
        **SD15_PUBLISHED,
        "_class_name": "DDIMScheduler",
        "timestep_spacing": "trailing",
        "rescale_betas_zero_snr": True,
        "prediction_type": "v_prediction",
        "steps_offset": 0,
    }
    training = discrete_schedule(config, "test")
    assert (training.spacing, training.steps_offset) == ("trailing", 0)
    assert (
        training.schedule.zero_terminal_snr and training.schedule.prediction_type == "v_prediction"
    )


def test_a_left_out_spacing_is_the_named_schedulers_default():
    config = {**SD15_PUBLISHED, "_class_name": "EulerDiscreteScheduler"}
    assert discrete_schedule(config, "test").spacing == "linspace"


def test_sana_flow_shift_under_either_name():
    dpm = {
        "_class_name": "DPMSolverMultistepScheduler",
        "use_flow_sigmas": True,
        "prediction_type": "flow_prediction",
        "flow_shift": 3.0,
    }
    euler = {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0}
    assert (
        flow_schedule(dpm, "test").schedule
        == flow_schedule(euler, "test").schedule
        == SANA_SCHEDULE
    )


@pytest.mark.parametrize(
    "config",
    [{"trained_betas": [0.1, 0.2]}, {"beta_schedule": "cubic"}, {"timestep_spacing": "sideways"}],
)
def test_unusable_configs(config):
    with pytest.raises(CheckpointError, match="test"):
        discrete_schedule({**SD15_PUBLISHED, **config}, "test")
