"""The study and the notation exactly as the supplement defines them (issue 11).

Zoo cells (supplement C), the cXrYsZeW levels (supplement D and the official code's pinned
values), rho_e (supplement D), the tolerant rho_sp (supplement B), the two profiles (E.1-E.3)
and the ImageNet MAC note. Expected numbers are computed by hand in the comments.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from econas_hpc.cli import main
from econas_hpc.errors import StateError
from econas_hpc.space.catalog import ZOO_OPS
from econas_hpc.space.genotype import Genotype
from econas_hpc.space.sampling import mutate, reconcat, sample_genotype
from econas_hpc.store.zoo_state import ZooStore
from econas_hpc.study.report import ReportOptions, zoo_report
from econas_hpc.study.zoo import check_rules, create_zoo

# --- 1. zoo cells output all 5 intermediate nodes (supplement C) ---------------------------


def test_all_concat_mode_keeps_every_intermediate_node_through_mutation() -> None:
    rng = np.random.default_rng(3)
    g = sample_genotype(rng, nodes=5, ops=ZOO_OPS, concat_mode="all")
    assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5, 6)
    for _ in range(20):
        g = mutate(g, rng, ops=ZOO_OPS, concat_mode="all")
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5, 6)
    # The search's rules are unchanged: node 2 read by node 3 leaves the clean output, and
    # the unread input 0 joins the faithful one.
    edges = (("identity", 1), ("identity", 1), ("identity", 2), ("identity", 1))
    assert reconcat(edges, "clean") == (3,)
    assert reconcat(edges, "faithful") == (0, 3)
    assert reconcat(edges, "all") == (2, 3)


def test_zoo_create_size_20_every_cell_outputs_five_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "zoo.h5"
    assert main(["zoo", "create", "--size", "20", "--state", str(path), "--json"]) == 0
    zoo = ZooStore(path).load()
    assert len(zoo.networks) == 20 and zoo.cell_concat == "all"
    for network in zoo.networks.values():
        g = Genotype.from_json(network.genotype_json)
        assert g.normal_concat == g.reduce_concat == (2, 3, 4, 5, 6)
    with h5py.File(path, "r") as handle:
        assert handle.attrs["cell_concat"] == "all"


def _legacy_zoo(path: Path) -> None:
    """A zoo file as the previous version wrote it: clean concat, no cell_concat attribute."""
    create_zoo(path, 3, seed=1)
    with h5py.File(path, "r+") as handle:
        del handle.attrs["cell_concat"]
        config = json.loads(handle.attrs["config_json"])
        handle.attrs["config_json"] = json.dumps({**config, "concat_mode": "clean"})


def test_zoo_train_and_report_refuse_an_old_rule_zoo(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "old.h5"
    _legacy_zoo(path)
    zoo = ZooStore(path).load()
    assert zoo.cell_concat == ""
    with pytest.raises(StateError, match="zoo create"):
        check_rules(zoo, path)
    with pytest.raises(StateError, match="'clean' cell rule"):
        zoo_report(path, ReportOptions(figures=False))
    capsys.readouterr()
    args = ["zoo", "train", str(path), "--settings", "c4r4s0e1", "--dataset", "synthetic"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "econas-hpc zoo create --state" in err
    assert main(["zoo", "report", str(path), "--no-figures"]) == 2
    assert "zoo create" in capsys.readouterr().err
