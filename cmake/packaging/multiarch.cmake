# SPDX-License-Identifier: Apache-2.0
# CPACK_PRE_BUILD_SCRIPTS: runs in the staging tree before the package is made. If the build's
# library directory was plain "lib" (a prefix other than /usr at configure time), moves
# usr/lib/softmig to usr/lib/<multiarch>/softmig, the Debian layout.
if(NOT CPACK_SOFTMIG_ARCH OR NOT CPACK_SOFTMIG_LIBDIR STREQUAL "lib")
  return()
endif()
file(GLOB_RECURSE _libs LIST_DIRECTORIES false "${CPACK_TEMPORARY_INSTALL_DIRECTORY}/*/lib/softmig/libsoftmig.so")
foreach(_lib IN LISTS _libs)
  get_filename_component(_softmig_dir ${_lib} DIRECTORY)
  get_filename_component(_lib_dir ${_softmig_dir} DIRECTORY)
  file(MAKE_DIRECTORY ${_lib_dir}/${CPACK_SOFTMIG_ARCH})
  file(RENAME ${_softmig_dir} ${_lib_dir}/${CPACK_SOFTMIG_ARCH}/softmig)
  message(STATUS "softmig: library moved to lib/${CPACK_SOFTMIG_ARCH}/softmig")
endforeach()
