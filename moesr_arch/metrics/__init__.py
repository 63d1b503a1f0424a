from moesr_arch.registration import import_modules

# Every '*_metric.py' module here registers its functions into BasicSR's METRIC_REGISTRY on import.
modules = import_modules(__name__, __file__, '_metric')
