from setuptools import find_packages, setup

setup(
    name='moesr',
    version='0.1.0',
    description='Mixture-of-experts super-resolution (MoE-SR, SeemoRe, MoEISR) as a BasicSR plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10,<3.13',
    packages=find_packages(include=['moesr_arch', 'moesr_arch.*']),
    package_data={'moesr_arch.tools.prepare': ['photos.tsv'],   # the photo list of `basicsr prepare photos`
                  'moesr_arch.weights': ['*.safetensors', '*.md']},   # the shipped models and their cards
    install_requires=[
        'torch>=2.1',
        'torchvision>=0.16',
        'basicsr==1.4.2',
        'ultralytics>=8.1',
        'opencv-python-headless',
        'lmdb',
        'pyyaml',
        'scikit-image',      # demo photos ship in these four packages' wheels (make_demo_dataset.py)
        'matplotlib',
        'scikit-learn',
        'mahotas',
        'numpy',
        'scipy',
        'pillow',
        'tqdm',
        'psutil',
        'tensorboard',
        'pydantic>=2',       # the option schema (moesr_arch/options/)
        'safetensors',       # the shipped weights (moesr_arch/weights/)
    ],
    extras_require={
        'test': ['pytest', 'pytest-timeout', 'pytest-xdist', 'spandrel', 'onnx', 'onnxruntime', 'safetensors', 'jsonschema'],
        'export': ['onnx', 'onnxruntime', 'safetensors'],
    },
    entry_points={'console_scripts': ['basicsr=moesr_arch.cli:main', 'moesr=moesr_arch.cli:main']},
)
