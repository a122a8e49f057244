"""Argument checks name the parameter and the accepted values."""

import pytest
import torch

from madlib._checks import check_choice, check_int, check_interval, resolve_device


def test_errors_name_the_parameter_and_the_accepted_values():
    with pytest.raises(ValueError, match=r"runs must be an integer >= 1; got -3"):
        check_int("runs", -3, minimum=1)
    with pytest.raises(TypeError, match="runs must be an integer"):
        check_int("runs", 2.5)
    with pytest.raises(ValueError, match=r"lam must lie in \(0, 1\]; got 1.5"):
        check_interval("lam", 1.5, 0.0, 1.0, low_open=True)
    with pytest.raises(ValueError, match=r"sampler must be one of \['ddpm', 'heun'\]; got 'hune'"):
        check_choice("sampler", "hune", {"ddpm", "heun"})


def test_resolve_device():
    assert resolve_device("device", "cpu") == "cpu"
    assert resolve_device("device", "auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match=r"device must be one of \['auto', 'cpu', 'cuda', 'cuda:N'\]; got 'gpu'"):
        resolve_device("device", "gpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA device is available"):
            resolve_device("device", "cuda")
