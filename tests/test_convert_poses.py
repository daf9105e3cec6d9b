"""Axis-angle poses <-> RELION ZYZ Euler angles, checked against scipy."""

import warnings

import numpy as np
import pytest

from csfast.convert.poses import euler_to_rotvec, rotvec_to_euler

Rotation = pytest.importorskip("scipy.spatial.transform").Rotation


def _scipy_euler(v: np.ndarray) -> np.ndarray:
    with warnings.catch_warnings():
        # scipy warns at gimbal lock (tilt 0 or 180) and then sets psi to 0, as we do
        warnings.filterwarnings("ignore", message="Gimbal lock detected")
        return Rotation.from_rotvec(v).as_euler("ZYZ", degrees=True)


def _angle_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs((a - b + 180.0) % 360.0 - 180.0)


def _same_rotation(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    return np.abs(Rotation.from_rotvec(v).as_matrix() - Rotation.from_rotvec(w).as_matrix()).max()


EDGE = np.array([
    [0.0, 0.0, 0.0],                            # identity
    [np.pi, 0.0, 0.0],                          # 180 degrees about x: tilt 180
    [0.0, np.pi, 0.0],                          # 180 degrees about y: tilt 180
    [0.0, 0.0, np.pi],                          # 180 degrees about z: tilt 0
    [0.0, 0.0, -np.pi],
    [np.pi / np.sqrt(2), np.pi / np.sqrt(2), 0.0],  # 180 degrees about x = y
    [np.pi / np.sqrt(3)] * 3,                   # 180 degrees about a diagonal
    [0.0, 0.0, 0.7],                            # pure in-plane: tilt exactly 0
    [0.0, 0.0, -2.5],
    [1e-12, -1e-12, 0.0],                       # tiny rotation
    [2.0, 0.0, 0.0],
    [0.0, -1.0, 0.0],
])


def test_random_poses_match_scipy():
    v = np.random.default_rng(0).normal(0.0, 1.5, size=(20_000, 3))
    ours = rotvec_to_euler(v)
    ref = _scipy_euler(v)
    assert _angle_diff(ours, ref).max() < 1e-9
    assert ours[:, 1].min() >= 0 and ours[:, 1].max() <= 180


def test_edge_poses_match_scipy():
    ours = rotvec_to_euler(EDGE)
    ref = _scipy_euler(EDGE)
    assert _angle_diff(ours, ref).max() < 1e-9
    # tilt exactly 0 and 180 where the rotation keeps or flips z
    assert ours[0, 1] == 0 and ours[3, 1] == 0 and ours[7, 1] == 0
    assert ours[1, 1] == 180 and ours[2, 1] == 180
    assert (ours[[0, 1, 2, 3, 7], 2] == 0).all()  # psi 0 at gimbal lock


@pytest.mark.parametrize("tilt", [0.0, 180.0])
def test_tilt_exactly_zero_and_180_round_trip(tilt):
    rng = np.random.default_rng(1)
    angles = np.stack([rng.uniform(-180, 180, 50), np.full(50, tilt),
                       rng.uniform(-180, 180, 50)], axis=1)
    v = euler_to_rotvec(angles)
    ref = Rotation.from_euler("ZYZ", angles, degrees=True)
    assert np.abs(Rotation.from_rotvec(v).as_matrix() - ref.as_matrix()).max() < 1e-12
    back = rotvec_to_euler(v)
    assert np.abs(back[:, 1] - tilt).max() < 1e-9
    assert np.abs(Rotation.from_euler("ZYZ", back, degrees=True).as_matrix()
                  - ref.as_matrix()).max() < 1e-12


def test_euler_back_to_rotvec():
    v = np.random.default_rng(2).normal(0.0, 1.2, size=(20_000, 3))
    back = euler_to_rotvec(rotvec_to_euler(v))
    assert _same_rotation(v, back) < 1e-12
    # the same vector wherever the rotation is under 180 degrees (|v| < pi)
    short = np.linalg.norm(v, axis=1) < np.pi - 1e-6
    assert np.abs(back[short] - v[short]).max() < 1e-9
    assert np.linalg.norm(back, axis=1).max() <= np.pi + 1e-12
    # scipy's own inverse agrees
    ref = Rotation.from_euler("ZYZ", rotvec_to_euler(v), degrees=True).as_rotvec()
    assert np.abs(ref - back).max() < 1e-9


def test_edge_poses_back_to_rotvec():
    back = euler_to_rotvec(rotvec_to_euler(EDGE))
    # 1e-9: a tilt under 1e-9 rad counts as gimbal lock (the 1e-12 pose's tilt is dropped)
    assert _same_rotation(EDGE, back) < 1e-9
    assert np.abs(back[0]).max() == 0  # identity stays exactly 0
    assert np.isclose(np.linalg.norm(back[1]), np.pi)  # 180-degree turns stay 180


def test_relion_matrix_is_the_transpose_of_rodrigues():
    """RELION's Euler matrix (Euler_angles2matrix) is the transpose of Rodrigues(v)."""
    v = np.random.default_rng(3).normal(0.0, 1.0, size=(200, 3))
    rot, tilt, psi = np.radians(rotvec_to_euler(v)).T
    ca, sa, cb, sb, cg, sg = (np.cos(rot), np.sin(rot), np.cos(tilt), np.sin(tilt),
                              np.cos(psi), np.sin(psi))
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    # RELION's euler.cpp, written out
    relion = np.stack([
        np.stack([cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb], -1),
        np.stack([-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb], -1),
        np.stack([sc, ss, cb], -1),
    ], axis=1)
    rodrigues = Rotation.from_rotvec(v).as_matrix()
    assert np.abs(relion - np.transpose(rodrigues, (0, 2, 1))).max() < 1e-12
