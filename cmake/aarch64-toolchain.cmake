# Cross-compiling pysparse for 64-bit ARM (Raspberry Pi OS bookworm, Debian
# arm64) on an x86-64 host with Debian's g++-aarch64-linux-gnu. Used by
# .ci/aarch64; PYSPARSE_ARM64_ROOTFS points at an arm64 userland that provides
# the target's Python headers and is what qemu-aarch64 runs tests in.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# The baseline every 64-bit ARM core runs (Cortex-A53/A72/A76): NEON included.
set(CMAKE_CXX_FLAGS_INIT "-march=armv8-a")

set(PYBIND11_USE_CROSSCOMPILING ON)
if(DEFINED ENV{PYSPARSE_ARM64_ROOTFS})
  set(_rootfs "$ENV{PYSPARSE_ARM64_ROOTFS}")
  set(CMAKE_CROSSCOMPILING_EMULATOR "qemu-aarch64;-L;${_rootfs}")
  # Debian's pyconfig.h includes <aarch64-linux-gnu/python3.X/pyconfig.h>: search
  # the userland's /usr/include last, so it never shadows the cross compiler's.
  string(APPEND CMAKE_CXX_FLAGS_INIT " -idirafter ${_rootfs}/usr/include")
endif()

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)
