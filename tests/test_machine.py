"""What a figure JSON and a benchmark record of the machine."""

import os

import torch

from madlib.machine import machine_info, matmul_gflops


def test_machine_info_names_the_cpu_cores_and_a_speed_probe():
    info = machine_info()
    assert info["cpu"] and info["machine"]
    assert 1 <= info["cores"] <= (os.cpu_count() or 1)
    assert info["torch_threads"] == torch.get_num_threads()
    assert info["matmul_gflops_1thread"] > 0
    assert "matmul_gflops_1thread" not in machine_info(probe=False)


def test_the_probe_leaves_torch_threads_as_they_were():
    before = torch.get_num_threads()
    matmul_gflops(size=64, repeats=1, threads=1)
    assert torch.get_num_threads() == before
