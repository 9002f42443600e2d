# Type information for wmfast/_build_info.py, which CMake writes from python/build_info.py.in
# when wmfast is built.
TORCH_VERSION: str
BUILD_TYPE: str
COMPILER: str
