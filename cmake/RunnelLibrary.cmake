# runnel_library(NAME SOURCES a.cc b.cc DEPS other_target...)
# Makes the one library target of a folder: `runnel_<NAME>`, aliased as `runnel::<NAME>`.
# Public headers are included as "<folder>/<file>.h" from the repository root.
function(runnel_library name)
  cmake_parse_arguments(ARG "" "" "SOURCES;DEPS" ${ARGN})
  add_library(runnel_${name} STATIC ${ARG_SOURCES})
  add_library(runnel::${name} ALIAS runnel_${name})
  target_include_directories(runnel_${name} PUBLIC ${PROJECT_SOURCE_DIR} ${PROJECT_BINARY_DIR})
  target_link_libraries(runnel_${name} PUBLIC ${ARG_DEPS})
endfunction()

# runnel_test(NAME SOURCES a_test.cc DEPS target... LABEL folder)
# A GoogleTest binary whose tests CTest discovers one by one, labelled by folder.
function(runnel_test name)
  cmake_parse_arguments(ARG "" "LABEL" "SOURCES;DEPS" ${ARGN})
  add_executable(${name} ${ARG_SOURCES})
  target_link_libraries(${name} PRIVATE ${ARG_DEPS} runnel_test_support GTest::gmock GTest::gtest_main)
  gtest_discover_tests(${name} PROPERTIES LABELS ${ARG_LABEL} DISCOVERY_TIMEOUT 60)
endfunction()
