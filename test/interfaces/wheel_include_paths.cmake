# Included into the interface package's build (CMAKE_PROJECT_INCLUDE). The message wheels' exported
# targets name the wheel builder's Python and NumPy include folders (/opt/python/cp311-cp311/...), which
# do not exist here and which CMake rejects; at the end of the configure step every imported target's
# include folders are pointed at this interpreter's (ICM_PYTHON_INCLUDE, ICM_NUMPY_INCLUDE).
function(icm_point_include_paths_here)
  get_property(targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(folders ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(folders AND folders MATCHES "/opt/python/")
      list(TRANSFORM folders REPLACE "^/opt/python/[^;]*/include/python3[.0-9]*$" "${ICM_PYTHON_INCLUDE}")
      list(TRANSFORM folders REPLACE "^/opt/python/[^;]*/numpy/_core/include$" "${ICM_NUMPY_INCLUDE}")
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${folders}")
    endif()
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL icm_point_include_paths_here)
