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

# runnel_protos(TARGET a.proto...)
# C++ for protos of the current folder, named from the source root ("state/state.proto") so
# that one folder's protos can import another's ("streaming/batch.proto"); the generated
# state/state.pb.h lands at the same path under the build root.
function(runnel_protos target)
  foreach(proto ${ARGN})
    file(RELATIVE_PATH rel ${PROJECT_SOURCE_DIR} ${CMAKE_CURRENT_SOURCE_DIR}/${proto})
    string(REGEX REPLACE "\\.proto$" "" stem ${rel})
    set(out ${PROJECT_BINARY_DIR}/${stem}.pb.cc ${PROJECT_BINARY_DIR}/${stem}.pb.h)
    add_custom_command(
      OUTPUT ${out}
      COMMAND protobuf::protoc --cpp_out ${PROJECT_BINARY_DIR} -I ${PROJECT_SOURCE_DIR}
              ${PROJECT_SOURCE_DIR}/${rel}
      DEPENDS ${PROJECT_SOURCE_DIR}/${rel} protobuf::protoc
      COMMENT "protoc ${rel}"
      VERBATIM)
    target_sources(${target} PRIVATE ${out})
  endforeach()
endfunction()
