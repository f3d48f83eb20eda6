# SPDX-License-Identifier: Apache-2.0
# The Debian package (cpack -G DEB in the build tree) and the files `cmake --install` adds for
# other distributions. Layout with prefix /usr:
#   /usr/bin/softmig                                  the tool
#   /usr/lib/<multiarch>/softmig/libsoftmig.so        the preloaded library (not on the loader's path:
#                                                     it is loaded through /etc/ld.so.preload only)
#   /usr/share/softmig/slurm/                         prolog/epilog, job_submit/cli_filter, examples
#   /usr/share/doc/softmig/                           README and docs
#   /usr/share/man/man1/softmig.1.gz                  manual page (each command also has --help)
#   /usr/lib/tmpfiles.d/softmig.conf                  recreates /run/softmig and /var/log/softmig at boot
# /var/log/softmig (1733) and /var/run/softmig (0755) are created by postinst, not shipped: /run
# is a tmpfs. Installing never touches /etc/ld.so.preload; `softmig install-preload` does, and
# the prerm script undoes it when the package is removed, so that no program looks for a library
# that is gone.
set(_softmig_pkg_dir ${CMAKE_CURRENT_LIST_DIR}/packaging)

if(EXISTS ${PROJECT_SOURCE_DIR}/slurm)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/slurm/ DESTINATION ${CMAKE_INSTALL_DATADIR}/softmig/slurm
          USE_SOURCE_PERMISSIONS)
endif()
file(GLOB _softmig_docs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/docs/*.md)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${_softmig_docs} DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(FILES ${_softmig_pkg_dir}/softmig.tmpfiles DESTINATION lib/tmpfiles.d RENAME softmig.conf)
# Debian wants compressed manual pages.
find_program(SOFTMIG_GZIP gzip)
if(SOFTMIG_GZIP)
  set(_softmig_man ${CMAKE_BINARY_DIR}/man/softmig.1.gz)
  add_custom_command(OUTPUT ${_softmig_man}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
    COMMAND ${SOFTMIG_GZIP} -9 -n -c ${PROJECT_SOURCE_DIR}/docs/man/softmig.1 > ${_softmig_man}
    DEPENDS ${PROJECT_SOURCE_DIR}/docs/man/softmig.1 VERBATIM)
  add_custom_target(softmig_man ALL DEPENDS ${_softmig_man})
  install(FILES ${_softmig_man} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  install(FILES ${PROJECT_SOURCE_DIR}/docs/man/softmig.1 DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
endif()

set(CPACK_GENERATOR "DEB" CACHE STRING "CPack generators")
set(CPACK_PACKAGE_NAME softmig)
set(CPACK_PACKAGE_VENDOR "softmig")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_PACKAGE_CONTACT "softmig maintainers <softmig@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Software GPU slices for SLURM clusters")
set(CPACK_PACKAGE_DESCRIPTION "softmig enforces per-job GPU memory limits with a preloaded library (libsoftmig.so) and gives administrators the softmig tool: status, doctor, metrics, SLURM prolog and epilog.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
find_program(SOFTMIG_DPKG_SHLIBDEPS dpkg-shlibdeps)
if(SOFTMIG_DPKG_SHLIBDEPS)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "libc6 (>= 2.34), libstdc++6, libfmt9")
endif()
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
    ${_softmig_pkg_dir}/postinst ${_softmig_pkg_dir}/prerm ${_softmig_pkg_dir}/postrm)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)
# A build configured with a prefix other than /usr has a plain "lib" library directory; the
# package still puts the library in /usr/lib/<multiarch>/softmig, where the tool looks for it.
# (CPACK_* variables reach the script through CPackConfig.cmake.)
set(CPACK_SOFTMIG_LIBDIR "${CMAKE_INSTALL_LIBDIR}")
set(CPACK_SOFTMIG_ARCH "${CMAKE_LIBRARY_ARCHITECTURE}")
set(CPACK_PRE_BUILD_SCRIPTS ${_softmig_pkg_dir}/multiarch.cmake)
include(CPack)
