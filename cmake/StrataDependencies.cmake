# Finds Strata's dependencies. Each optional one gets an option STRATA_WITH_<NAME>, ON by default
# when found; asking for one that is missing is an error. A summary is printed at the end.
# Under CI (environment variable CI=true) every dependency that scripts/setup.sh installs is
# required: a missing install step then fails the configure, instead of silently leaving out the
# SimGrid, golden or MPI tests. CUDA is not a Debian package and stays optional.
find_package(nlohmann_json 3.10 REQUIRED)
find_package(PkgConfig)

# --- CUDA (nvcc) -------------------------------------------------------------------------------
include(CheckLanguage)
if(NOT CMAKE_CUDA_COMPILER AND EXISTS /usr/local/cuda/bin/nvcc)
  set(CMAKE_CUDA_COMPILER /usr/local/cuda/bin/nvcc)
endif()
check_language(CUDA)
set(_strata_cuda_found OFF)
if(CMAKE_CUDA_COMPILER)
  set(_strata_cuda_found ON)
endif()
option(STRATA_WITH_CUDA "Build the CUDA kernels and GPU backend" ${_strata_cuda_found})
if(STRATA_WITH_CUDA)
  if(NOT _strata_cuda_found)
    message(FATAL_ERROR "STRATA_WITH_CUDA=ON but no CUDA compiler was found (set CMAKE_CUDA_COMPILER)")
  endif()
  # Hopper and Ampere by default: what CUDA 13 supports for the machines we target.
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 80 90)
  endif()
  enable_language(CUDA)
endif()

# Compiles a target's .cu files as C++20. CMake < 3.26 knows no C++20 flag for nvcc (and applies
# the C++ standard to CUDA sources too, then refuses it), while nvcc itself accepts -std=c++20.
function(strata_cuda_cxx20 target)
  if(CMAKE_VERSION VERSION_GREATER_EQUAL 3.26)
    set_target_properties(${target} PROPERTIES CUDA_STANDARD 20 CUDA_STANDARD_REQUIRED ON)
  else()
    set_property(TARGET ${target} PROPERTY CUDA_STANDARD)
    set_property(TARGET ${target} PROPERTY CUDA_STANDARD_REQUIRED OFF)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:-std=c++20>)
  endif()
endfunction()

if(STRATA_WITH_CUDA)
  find_package(CUDAToolkit REQUIRED)
endif()

# --- MPI ---------------------------------------------------------------------------------------
find_package(MPI COMPONENTS CXX QUIET)
option(STRATA_WITH_MPI "Build the MPI communication backend" ${MPI_CXX_FOUND})
if(STRATA_WITH_MPI AND NOT MPI_CXX_FOUND)
  message(FATAL_ERROR "STRATA_WITH_MPI=ON but MPI was not found (install libopenmpi-dev)")
endif()

# --- SimGrid (pkg-config; see shared notes: FindSimGrid.cmake would reset the C++ standard) ---
set(_strata_simgrid_found OFF)
if(PKG_CONFIG_FOUND)
  pkg_check_modules(SIMGRID QUIET IMPORTED_TARGET simgrid>=3.32)
  if(SIMGRID_FOUND)
    set(_strata_simgrid_found ON)
  endif()
endif()
option(STRATA_WITH_SIMGRID "Build the SimGrid simulator" ${_strata_simgrid_found})
if(STRATA_WITH_SIMGRID AND NOT _strata_simgrid_found)
  message(FATAL_ERROR "STRATA_WITH_SIMGRID=ON but simgrid>=3.32 was not found (install libsimgrid-dev)")
endif()

# --- Qt 6 --------------------------------------------------------------------------------------
find_package(Qt6 COMPONENTS Widgets Svg Concurrent QUIET)  # Svg: SVG export; Concurrent: loading
option(STRATA_WITH_QT "Build the Qt strategy visualizer" ${Qt6_FOUND})
if(STRATA_WITH_QT AND NOT Qt6_FOUND)
  message(FATAL_ERROR "STRATA_WITH_QT=ON but Qt6 Widgets and Svg were not found (install qt6-base-dev qt6-svg-dev)")
endif()

# --- Python (pybind11) -------------------------------------------------------------------------
# The Python package's extension (python/, docs/python.md). Debian's interpreter by default: the
# one scripts/setup.sh installs pybind11 and pytest for (a PATH may put another python3 first);
# `pip install .` passes its own (python/strata_build.py). Off under the sanitizers: the
# extension cannot load into an interpreter built without them.
if(NOT DEFINED Python_EXECUTABLE AND EXISTS /usr/bin/python3)
  set(Python_EXECUTABLE /usr/bin/python3 CACHE FILEPATH "The Python interpreter of python/")
endif()
find_package(Python 3.9 COMPONENTS Interpreter Development.Module QUIET)
set(_strata_python_found OFF)
if(Python_FOUND)
  set(PYBIND11_FINDPYTHON ON)
  find_package(pybind11 2.6 CONFIG QUIET)
  if(pybind11_FOUND AND NOT STRATA_SANITIZE)
    set(_strata_python_found ON)
  endif()
endif()
option(STRATA_WITH_PYTHON "Build the Python package's extension (python/)" ${_strata_python_found})
if(STRATA_WITH_PYTHON AND NOT pybind11_FOUND)
  message(FATAL_ERROR "STRATA_WITH_PYTHON=ON but pybind11 or the Python headers were not found "
                      "(install pybind11-dev python3-dev)")
endif()
set(_strata_pytest_found OFF)
if(Python_FOUND)
  execute_process(COMMAND ${Python_EXECUTABLE} -c "import pytest"
                  RESULT_VARIABLE _strata_pytest_rc OUTPUT_QUIET ERROR_QUIET)
  if(_strata_pytest_rc EQUAL 0)
    set(_strata_pytest_found ON)
  endif()
endif()

# --- Eigen, GoogleTest, Google Benchmark -------------------------------------------------------
find_package(Eigen3 3.3 QUIET NO_MODULE)
find_package(GTest QUIET)
find_package(benchmark QUIET)

function(_strata_summary_line name value)
  string(LENGTH "${name}" _len)
  math(EXPR _pad "18 - ${_len}")
  string(REPEAT " " ${_pad} _spaces)
  message(STATUS "  ${name}${_spaces}${value}")
endfunction()
message(STATUS "Strata configuration:")
_strata_summary_line("CUDA" "${STRATA_WITH_CUDA} (compiler: ${CMAKE_CUDA_COMPILER}, archs: ${CMAKE_CUDA_ARCHITECTURES})")
_strata_summary_line("MPI" "${STRATA_WITH_MPI}")
_strata_summary_line("SimGrid" "${STRATA_WITH_SIMGRID} ${SIMGRID_VERSION}")
_strata_summary_line("Qt6" "${STRATA_WITH_QT}")
_strata_summary_line("Python" "${STRATA_WITH_PYTHON} (${Python_EXECUTABLE}, pybind11 ${pybind11_VERSION}, pytest ${_strata_pytest_found})")
_strata_summary_line("Eigen3" "${Eigen3_FOUND}")
_strata_summary_line("GoogleTest" "${GTest_FOUND}")
_strata_summary_line("benchmark" "${benchmark_FOUND}")

set(_strata_ci "$ENV{CI}")
if(_strata_ci)
  _strata_summary_line("CI mode" "on (CI=$ENV{CI}): MPI, SimGrid, Qt6, Eigen3, GoogleTest, benchmark and Python required")
  # Each with the package of scripts/setup.sh that provides it.
  set(_strata_missing "")
  if(NOT MPI_CXX_FOUND)
    list(APPEND _strata_missing "MPI (libopenmpi-dev)")
  elseif(NOT MPIEXEC_EXECUTABLE)  # the MPI tests run under mpiexec
    list(APPEND _strata_missing "mpiexec (openmpi-bin)")
  endif()
  if(NOT _strata_simgrid_found)
    list(APPEND _strata_missing "SimGrid >= 3.32 (libsimgrid-dev)")
  endif()
  if(NOT Qt6_FOUND)
    list(APPEND _strata_missing "Qt6 Widgets and Svg (qt6-base-dev, qt6-svg-dev)")
  endif()
  if(NOT Eigen3_FOUND)
    list(APPEND _strata_missing "Eigen3 >= 3.3 (libeigen3-dev)")
  endif()
  if(NOT GTest_FOUND)
    list(APPEND _strata_missing "GoogleTest (libgtest-dev, libgmock-dev)")
  endif()
  if(NOT benchmark_FOUND)
    list(APPEND _strata_missing "Google Benchmark (libbenchmark-dev)")
  endif()
  if(NOT STRATA_SANITIZE AND NOT (_strata_python_found AND _strata_pytest_found))
    list(APPEND _strata_missing "pybind11, the Python headers and pytest (pybind11-dev, "
                                "python3-dev, python3-pytest)")
  endif()
  if(_strata_missing)
    list(JOIN _strata_missing ", " _strata_missing)
    message(FATAL_ERROR "CI=$ENV{CI} requires every dependency that scripts/setup.sh installs; "
                        "missing: ${_strata_missing}. Run scripts/setup.sh (or unset CI for a "
                        "local build without them).")
  endif()
else()
  _strata_summary_line("CI mode" "off (CI=true would require MPI, SimGrid, Qt6, Eigen3, GoogleTest, benchmark, Python)")
endif()
