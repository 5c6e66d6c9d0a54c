"""The injection library: one generative model of lensed sources for the whole toolkit.

Used by the ``inject`` and ``calibrate`` stages and by the mock survey's lensed populations
(``simulate.anchor_model: injection`` draws the anchors from exactly this model). Modules:

* :mod:`~gen5dask.injection.laws` -- parameter laws (:class:`~gen5dask.injection.laws.Laws`),
  keyed vectorised draws, the target arc_snr law, noise keys;
* :mod:`~gen5dask.injection.colour` -- the one colour law (g = r + gr, z = r - rz,
  i = r - rz / 2) and magnitude/flux conversions;
* :mod:`~gen5dask.injection.ids` -- the sample-id codec of ``train.zarr``;
* :mod:`~gen5dask.injection.plan` -- host scan, quarantine and the plan of output rows;
* :mod:`~gen5dask.injection.sources` / :mod:`~gen5dask.injection.realgalaxy` -- Sersic or
  real-galaxy (GalSim RealGalaxy catalogue) sources and their per-process cache;
* :mod:`~gen5dask.injection.render` -- bit-stable batch rendering of unit-flux arcs;
* :mod:`~gen5dask.injection.amplitude` -- the one amplitude policy (target arc_snr);
* :mod:`~gen5dask.injection.matched_filter` -- ``snr_opt``, the matched-filter S/N;
* :mod:`~gen5dask.injection.spec` -- typed, frozen specs built once per stage;
* :mod:`~gen5dask.injection.batch` -- :func:`~gen5dask.injection.batch.inject_rows`, one batch;
* :mod:`~gen5dask.injection.calibration` -- ``calibration.json`` target and achieved fractions.

The library never imports :mod:`gen5dask.stages` (stages are its drivers).
"""
