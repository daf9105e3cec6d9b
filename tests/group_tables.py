"""Hand-built result groups for the group and input tests: numpy tables saved with
numpy itself, .csg files written as YAML text, joins computed by brute force over
Python dictionaries (never by csfast)."""

import os

import numpy as np
import yaml

from csfast import ResultGroup


def uids(n, rng):
    """Distinct uids over the full range (about half >= 2**63)."""
    out = np.unique(rng.integers(0, 2**64, size=2 * n + 10, dtype=np.uint64))
    return rng.permutation(out)[:n]


def table(u, rng, **results):
    """A structured array: uid, then fields per result, e.g. blob=[('path', 'S20'), ...]."""
    descr = [("uid", "<u8")]
    for r, fields in results.items():
        descr += [(f"{r}/{f[0]}",) + tuple(f[1:]) for f in fields]
    a = np.zeros(len(u), dtype=descr)
    a["uid"] = u
    for name in a.dtype.names[1:]:
        col = a[name]
        if col.dtype.kind == "S":
            a[name] = [
                f"{name}-{i}-{rng.integers(1000)}".encode()[: col.dtype.itemsize]
                for i in range(len(u))
            ]
        else:
            a[name] = rng.integers(0, 1000, size=col.shape).astype(col.dtype)
    return a


BLOB = [("path", "S24"), ("idx", "<u4"), ("shape", "<u4", (2,)), ("psize_A", "<f4")]
CTF = [("df1_A", "<f4"), ("df2_A", "<f4"), ("tilt_A", "<f4", (2,))]
LOCATION = [("micrograph_uid", "<u8"), ("center_x_frac", "<f4")]
ALIGN2D = [("class", "<u4"), ("pose", "<f4"), ("shift", "<f4", (2,))]
MAP = [("path", "S20"), ("shape", "<u4", (3,)), ("psize_A", "<f4")]


def save(path, arr):
    with open(path, "wb") as f:  # through a handle: np.save(str) would append .npy
        np.save(f, arr)
    return str(path)


def csg(folder, job, name, item_type, results, extra_keys=None):
    """Write a .csg by hand; results: {result: (metafile as written, num_items)}."""
    doc = {
        "created": "2024-05-01 12:00:00.000000",
        "group": {
            "name": name,
            "title": name.title(),
            "type": item_type,
            "description": "hand-written",
        },
        "results": {
            r: {
                "metafile": m,
                "num_items": n,
                "type": f"{item_type}.{r}",
                **(extra_keys or {}).get(r, {}),
            }
            for r, (m, n) in results.items()
        },
        "version": "v4.4.1",
    }
    path = os.path.join(folder, f"{job}_{name}.csg")
    with open(path, "w") as f:
        yaml.safe_dump(doc, f)
    return ResultGroup.from_csg(path)


def prefix_fields(arr, prefixes):
    return [k for k in arr.dtype.names if k.split("/", 1)[0] in prefixes]


def brute_join(first, others):
    """Rows of first (in order) whose uid is in every other table; each field from
    the table listed for it. others: [(array, [prefixes], rename {old: new} or None)]."""
    maps = [{int(u): i for i, u in enumerate(a["uid"])} for a, _, _ in others]
    rows = [i for i, u in enumerate(first["uid"]) if all(int(u) in m for m in maps)]
    out = {"uid": first["uid"][rows]}
    for (a, prefixes, rename), m in zip(others, maps, strict=True):
        idx = [m[int(first["uid"][i])] for i in rows]
        for k in prefix_fields(a, prefixes):
            head, _, tail = k.partition("/")
            out[f"{(rename or {}).get(head, head)}/{tail}"] = a[k][idx]
    return out


def assert_table(ds, expected):
    assert sorted(ds.fields()) == sorted(expected)
    assert len(ds) == len(expected["uid"])
    for k, v in expected.items():
        np.testing.assert_array_equal(ds[k], v, err_msg=k)


def chain_groups(d, rng):
    """The downsampled-particles case, as numpy arrays and hand-written .csg files.

    J2 extract (full-size blob + ctf; passthrough location), J3 downsample (new
    blob; passthrough ctf, location), J5 selection of a subset, in another
    row order (alignments2D; passthrough blob, ctf, location from J3).
    """
    n = 300
    u = uids(n, rng)
    j2_main = table(u, rng, blob=BLOB, ctf=CTF)
    j2_pt = table(rng.permutation(u), rng, location=LOCATION)
    j3_main = table(u, rng, blob=BLOB)
    j3_main["blob/shape"] = 64
    keep = rng.permutation(n)[:170]
    sel = u[keep]
    j5_main = table(sel, rng, alignments2D=ALIGN2D)
    # The passthrough of J5 comes from J3 (blob) and J2 (ctf, location), in J5's order.
    m3 = {int(x): i for i, x in enumerate(j3_main["uid"])}
    m2 = {int(x): i for i, x in enumerate(j2_main["uid"])}
    mp = {int(x): i for i, x in enumerate(j2_pt["uid"])}
    j5_pt = table(sel, rng, blob=BLOB, ctf=CTF, location=LOCATION)
    for k in prefix_fields(j5_pt, ["blob"]):
        j5_pt[k] = j3_main[k][[m3[int(x)] for x in sel]]
    for k in prefix_fields(j5_pt, ["ctf"]):
        j5_pt[k] = j2_main[k][[m2[int(x)] for x in sel]]
    for k in prefix_fields(j5_pt, ["location"]):
        j5_pt[k] = j2_pt[k][[mp[int(x)] for x in sel]]
    save(d / "J2_000_particles.cs", j2_main)
    save(d / "J2_passthrough_particles.cs", j2_pt)
    save(d / "J3_000_particles.cs", j3_main)
    save(d / "J5_004_particles_selected.cs", j5_main)
    save(d / "J5_passthrough_particles_selected.cs", j5_pt)
    j2 = csg(
        d,
        "J2",
        "particles",
        "particle",
        {
            "blob": (">J2_000_particles.cs", n),
            "ctf": (">J2_000_particles.cs", n),
            "location": (">J2_passthrough_particles.cs", n),
        },
    )
    j5 = csg(
        d,
        "J5",
        "particles_selected",
        "particle",
        {
            "alignments2D": (">J5_004_particles_selected.cs", len(sel)),
            "blob": (">J5_passthrough_particles_selected.cs", len(sel)),
            "ctf": (">J5_passthrough_particles_selected.cs", len(sel)),
            "location": (">J5_passthrough_particles_selected.cs", len(sel)),
        },
    )
    return {
        "j2": j2,
        "j5": j5,
        "j2_main": j2_main,
        "j2_pt": j2_pt,
        "j5_main": j5_main,
        "j5_pt": j5_pt,
        "folder": d,
    }


def blob_group(folder, job, u, rng):
    """A group of one blob result for the uids u: (its array, the ResultGroup)."""
    arr = table(u, rng, blob=BLOB)
    save(folder / f"{job}_000_particles.cs", arr)
    return arr, csg(
        folder, job, "particles", "particle", {"blob": (f">{job}_000_particles.cs", len(u))}
    )
