import numpy as np

import csfast
from csfast.synthetic import particles


def test_save_load_roundtrip_matches_numpy(tmp_path):
    ds = particles(500, seed=1)
    path = tmp_path / "p.cs"
    ds.save(path)
    ref = np.load(path)
    loaded = csfast.Dataset.load(path)
    assert len(loaded) == len(ref) == 500
    for name in ref.dtype.names:
        np.testing.assert_array_equal(loaded[name], ref[name])
        np.testing.assert_array_equal(ds[name], ref[name])
