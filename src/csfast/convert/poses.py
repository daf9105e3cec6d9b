"""Particle poses: cryoSPARC axis-angle vectors <-> RELION ZYZ Euler angles.

cryoSPARC stores a 3D pose (``alignments3D/pose``) as a rotation vector v
(axis times angle, radians): R = Rodrigues(v). RELION's rotation matrix A
is the transpose of R, and A = Rz'(psi) Ry'(tilt) Rz'(rot) with RELION's
passive elementary matrices, so R = A^T = Rz(rot) Ry(tilt) Rz(psi) with
active ones: (rot, tilt, psi) are the intrinsic ZYZ angles of R, the same
numbers ``scipy.spatial.transform.Rotation.from_rotvec(v).as_euler("ZYZ")``
gives. Angles are in degrees here: rot and psi in (-180, 180], tilt in
[0, 180]. At tilt 0 or 180 (gimbal lock) only rot + psi (or rot - psi) is
defined; psi is then set to 0, as scipy does.

All arithmetic is in float64 and vectorized; no scipy is needed.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "rotvec_to_matrix",
    "matrix_to_euler",
    "euler_to_matrix",
    "matrix_to_rotvec",
    "rotvec_to_euler",
    "euler_to_rotvec",
]

# Below this |sin(tilt)| the two Z rotations are indistinguishable in float64.
_GIMBAL_EPS = 1e-9


def rotvec_to_matrix(v: np.ndarray) -> np.ndarray:
    """Rodrigues matrices (n, 3, 3) of rotation vectors v (n, 3), radians."""
    v = np.asarray(v, dtype=np.float64).reshape(-1, 3)
    theta = np.linalg.norm(v, axis=1)
    small = theta < 1e-8
    safe = np.where(small, 1.0, theta)
    # sin(t)/t and (1 - cos(t))/t^2, with their Taylor limits near 0
    a = np.where(small, 1.0 - theta**2 / 6.0, np.sin(safe) / safe)
    b = np.where(small, 0.5 - theta**2 / 24.0, (1.0 - np.cos(safe)) / safe**2)
    x, y, z = v[:, 0], v[:, 1], v[:, 2]
    R = np.empty((len(v), 3, 3))
    R[:, 0, 0] = 1.0 - b * (y * y + z * z)
    R[:, 1, 1] = 1.0 - b * (x * x + z * z)
    R[:, 2, 2] = 1.0 - b * (x * x + y * y)
    R[:, 0, 1] = b * x * y - a * z
    R[:, 1, 0] = b * x * y + a * z
    R[:, 0, 2] = b * x * z + a * y
    R[:, 2, 0] = b * x * z - a * y
    R[:, 1, 2] = b * y * z - a * x
    R[:, 2, 1] = b * y * z + a * x
    return R


def matrix_to_euler(R: np.ndarray) -> np.ndarray:
    """Intrinsic ZYZ angles (rot, tilt, psi) in degrees of matrices R = Rz(rot) Ry(tilt) Rz(psi).

    At tilt 0 or 180 psi is 0 and rot carries the whole in-plane turn.
    """
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    sin_tilt = np.hypot(R[:, 0, 2], R[:, 1, 2])
    tilt = np.arctan2(sin_tilt, R[:, 2, 2])
    rot = np.arctan2(R[:, 1, 2], R[:, 0, 2])
    psi = np.arctan2(R[:, 2, 1], -R[:, 2, 0])
    locked = sin_tilt < _GIMBAL_EPS
    if locked.any():
        up = locked & (R[:, 2, 2] > 0)  # tilt 0: R = Rz(rot + psi)
        down = locked & ~up  # tilt 180: R = Rz(rot - psi) diag(-1, 1, -1)
        rot = np.where(up, np.arctan2(R[:, 1, 0], R[:, 0, 0]), rot)
        rot = np.where(down, np.arctan2(-R[:, 1, 0], -R[:, 0, 0]), rot)
        psi = np.where(locked, 0.0, psi)
        tilt = np.where(up, 0.0, np.where(down, np.pi, tilt))
    return np.degrees(np.stack([rot, tilt, psi], axis=1))


def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """Matrices Rz(rot) Ry(tilt) Rz(psi) (n, 3, 3) from ZYZ angles (n, 3) in degrees."""
    a = np.radians(np.asarray(angles, dtype=np.float64).reshape(-1, 3))
    c1, c2, c3 = np.cos(a).T
    s1, s2, s3 = np.sin(a).T
    R = np.empty((len(a), 3, 3))
    R[:, 0, 0] = c1 * c2 * c3 - s1 * s3
    R[:, 0, 1] = -c1 * c2 * s3 - s1 * c3
    R[:, 0, 2] = c1 * s2
    R[:, 1, 0] = s1 * c2 * c3 + c1 * s3
    R[:, 1, 1] = -s1 * c2 * s3 + c1 * c3
    R[:, 1, 2] = s1 * s2
    R[:, 2, 0] = -s2 * c3
    R[:, 2, 1] = s2 * s3
    R[:, 2, 2] = c2
    return R


def matrix_to_rotvec(R: np.ndarray) -> np.ndarray:
    """Rotation vectors (n, 3), |v| <= pi, of rotation matrices (n, 3, 3).

    Goes through the unit quaternion (Shepperd's method: the largest of
    w, x, y, z is computed from the diagonal, so 180-degree turns are exact).
    """
    R = np.asarray(R, dtype=np.float64).reshape(-1, 3, 3)
    tr = R[:, 0, 0] + R[:, 1, 1] + R[:, 2, 2]
    diag = np.stack([tr, R[:, 0, 0], R[:, 1, 1], R[:, 2, 2]], axis=1)
    k = np.argmax(diag, axis=1)
    q = np.empty((len(R), 4))  # w, x, y, z
    for case in range(4):
        m = k == case
        if not m.any():
            continue
        r = R[m]
        if case == 0:
            s = 2.0 * np.sqrt(1.0 + tr[m])
            q[m] = np.stack(
                [
                    0.25 * s,
                    (r[:, 2, 1] - r[:, 1, 2]) / s,
                    (r[:, 0, 2] - r[:, 2, 0]) / s,
                    (r[:, 1, 0] - r[:, 0, 1]) / s,
                ],
                1,
            )
        elif case == 1:
            s = 2.0 * np.sqrt(1.0 + r[:, 0, 0] - r[:, 1, 1] - r[:, 2, 2])
            q[m] = np.stack(
                [
                    (r[:, 2, 1] - r[:, 1, 2]) / s,
                    0.25 * s,
                    (r[:, 0, 1] + r[:, 1, 0]) / s,
                    (r[:, 0, 2] + r[:, 2, 0]) / s,
                ],
                1,
            )
        elif case == 2:
            s = 2.0 * np.sqrt(1.0 - r[:, 0, 0] + r[:, 1, 1] - r[:, 2, 2])
            q[m] = np.stack(
                [
                    (r[:, 0, 2] - r[:, 2, 0]) / s,
                    (r[:, 0, 1] + r[:, 1, 0]) / s,
                    0.25 * s,
                    (r[:, 1, 2] + r[:, 2, 1]) / s,
                ],
                1,
            )
        else:
            s = 2.0 * np.sqrt(1.0 - r[:, 0, 0] - r[:, 1, 1] + r[:, 2, 2])
            q[m] = np.stack(
                [
                    (r[:, 1, 0] - r[:, 0, 1]) / s,
                    (r[:, 0, 2] + r[:, 2, 0]) / s,
                    (r[:, 1, 2] + r[:, 2, 1]) / s,
                    0.25 * s,
                ],
                1,
            )
    return _quaternion_to_rotvec(q)


def _quaternion_to_rotvec(q: np.ndarray) -> np.ndarray:
    """Rotation vectors (|v| <= pi) of unit quaternions (n, 4) as (w, x, y, z)."""
    q = np.where((q[:, 0] < 0)[:, None], -q, q)  # the rotation by <= 180 degrees
    vec = q[:, 1:]
    norm = np.linalg.norm(vec, axis=1)
    angle = 2.0 * np.arctan2(norm, q[:, 0])
    small = norm < 1e-12
    scale = np.where(
        small, 2.0 / np.where(q[:, 0] == 0, 1.0, q[:, 0]), angle / np.where(small, 1.0, norm)
    )
    return vec * scale[:, None]


def rotvec_to_euler(v: np.ndarray) -> np.ndarray:
    """RELION (rot, tilt, psi) in degrees, shape (n, 3), from cryoSPARC pose vectors (radians)."""
    return matrix_to_euler(rotvec_to_matrix(v))


def euler_to_rotvec(angles: np.ndarray) -> np.ndarray:
    """cryoSPARC pose vectors (radians, |v| <= pi) from RELION (rot, tilt, psi) in degrees.

    Through the quaternion qz(rot) qy(tilt) qz(psi), in closed form.
    """
    a = np.radians(np.asarray(angles, dtype=np.float64).reshape(-1, 3)) / 2.0
    rot, tilt, psi = a[:, 0], a[:, 1], a[:, 2]
    ct, st = np.cos(tilt), np.sin(tilt)
    q = np.stack(
        [
            ct * np.cos(rot + psi),
            st * np.sin(psi - rot),
            st * np.cos(rot - psi),
            ct * np.sin(rot + psi),
        ],
        axis=1,
    )
    return _quaternion_to_rotvec(q)
