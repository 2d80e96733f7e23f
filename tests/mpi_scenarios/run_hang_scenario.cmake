# Runs one hang scenario (hang_scenario.cpp) under mpirun and checks how it ended. Variables:
# MPIEXEC, NP, SCENARIO, DOCTOR_EXPECT, MODE, RUN_DIR, and for a broken mode EXPECT: the
# arguments doctor_expect checks the diagnosis against (KIND GROUP_NAME OP SEQ CULPRIT).
#   healthy: exit 0, no dump.
#   others:  the job is aborted (non-zero exit, not a ctest timeout), a watchdog or error handler
#            said why, every rank dumped, and the diagnosis names the culprit and the collective.
file(REMOVE_RECURSE "${RUN_DIR}")
execute_process(
  COMMAND "${MPIEXEC}" --oversubscribe --allow-run-as-root --bind-to none --mca btl self,vader
          --mca mpi_yield_when_idle 1 -np ${NP} "${SCENARIO}" ${MODE} "${RUN_DIR}"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err TIMEOUT 100)
message("mpirun exit: ${rc}\n--- stdout ---\n${out}\n--- stderr ---\n${err}")

file(GLOB dumps "${RUN_DIR}/flight_recorder/rank_*.json")
if(MODE STREQUAL "healthy")
  if(NOT rc EQUAL 0 OR dumps)
    message(FATAL_ERROR "the healthy scenario must exit 0 without dumps; exit ${rc}, dumps: ${dumps}")
  endif()
  return()
endif()

if(rc EQUAL 0 OR NOT rc MATCHES "^[0-9]+$")
  message(FATAL_ERROR "the ${MODE} scenario was not aborted by the watchdog (mpirun exit: ${rc})")
endif()
if(NOT err MATCHES "aborts the job: ")
  message(FATAL_ERROR "no rank logged why it aborted the job")
endif()
math(EXPR last "${NP} - 1")
foreach(rank RANGE ${last})
  if(NOT EXISTS "${RUN_DIR}/flight_recorder/rank_${rank}.json")
    message(FATAL_ERROR "rank ${rank} left no flight-recorder dump in ${RUN_DIR}/flight_recorder")
  endif()
endforeach()
execute_process(COMMAND "${DOCTOR_EXPECT}" "${RUN_DIR}" ${EXPECT} RESULT_VARIABLE doctor_rc)
if(NOT doctor_rc EQUAL 0)
  message(FATAL_ERROR "the diagnosis did not name what the ${MODE} scenario broke (expected: ${EXPECT})")
endif()
