# Runs train_demo with a straggler and --balance on a small subset and checks
# that the balancing happened and how its rates travelled: the slow worker
# (rank 1, 4x) trained on fewer samples than rank 0 in both modes; sync
# carried the rates inside its gradient allreduce (no "rates" allgather in
# worker 0's ledger), int8 (a lossy codec) allgathered them.
#   cmake -DDEMO=path/to/train_demo -DDATA=dir -DOUT=prefix -P check_train_balance.cmake
execute_process(
  COMMAND ${DEMO} --data ${DATA} --limit 2000 --test-limit 500 --epochs 2 --np 2
          --modes sync,int8 --batch 32 --straggler 1:4 --balance --no-progress
          --json ${OUT}.json --csv ${OUT}.csv --plot ${OUT} --plot-format svg
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "train_demo exited with ${rc}")
endif()
file(READ ${OUT}.json json)
string(JSON balance GET "${json}" config balance)
if(NOT balance)
  message(FATAL_ERROR "config.balance is '${balance}', expected true")
endif()
foreach(i 0 1)
  string(JSON mode GET "${json}" modes ${i} mode)
  string(JSON fast GET "${json}" modes ${i} ranks 0 samples)
  string(JSON slow GET "${json}" modes ${i} ranks 1 samples)
  if(NOT slow LESS fast)
    message(FATAL_ERROR "${mode}: the 4x straggler (rank 1) trained on ${slow} samples, rank 0 on ${fast}: expected fewer")
  endif()
  string(JSON total GET "${json}" modes ${i} samples)
  message(STATUS "${mode}: rank 0 ${fast} samples, straggler ${slow}, all ${total}")
endforeach()
file(STRINGS ${OUT}.csv rates_rows REGEX ",(sync|int8)/[0-9]+,allgather,[^,]*,rates,")
set(sync_rows ${rates_rows})
list(FILTER sync_rows INCLUDE REGEX ",sync/")
set(int8_rows ${rates_rows})
list(FILTER int8_rows INCLUDE REGEX ",int8/")
list(LENGTH sync_rows n_sync)
list(LENGTH int8_rows n_int8)
if(NOT n_sync EQUAL 0)
  message(FATAL_ERROR "sync: ${n_sync} rate allgathers in the ledger, expected none (the rates ride in the allreduce)")
endif()
if(n_int8 LESS 1)
  message(FATAL_ERROR "int8: no rate allgather in the ledger, expected one per rebalance")
endif()
message(STATUS "rates: sync in its allreduce, int8 by ${n_int8} allgathers")
