"""The mock DR10 survey that the demo, every stage and the tests run on.

* :mod:`gen5dask.sim.sky` -- footprint, DR10 bricks, observing-condition fields, depth <-> noise;
* :mod:`gen5dask.sim.maskbits` -- DR10-like MASKBITS and bad-pixel patterns;
* :mod:`gen5dask.sim.populations` -- light components, renderer and population models;
* :mod:`gen5dask.sim.survey` -- sample ids, per-sample draws and the chunk simulation used by
  ``gen5dask simulate`` (:mod:`gen5dask.stages.simulate`).
"""
