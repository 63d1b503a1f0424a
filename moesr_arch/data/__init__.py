from moesr_arch.registration import import_modules

# Every '*_dataset.py' module here registers its classes into BasicSR on import.
modules = import_modules(__name__, __file__, '_dataset')
