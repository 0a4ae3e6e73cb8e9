# --ps-sync-warmup: a short hybrid run (1 server + 2 workers, 2000 images: 31
# steps per epoch, 2 epochs) whose first half epoch is served in sync
# consistency. The server's own schedule and update counts must show the
# switch at the requested step: 16 sync updates (one per step, each the mean
# of both workers' gradients), then one update per push.
#   cmake -DDEMO=path/to/train_demo -DDATA=dir -DOUT=prefix -P check_train_ps_warmup.cmake
execute_process(
  COMMAND ${DEMO} --data ${DATA} --limit 2000 --test-limit 1000 --epochs 2 --np 2
          --modes hybrid --batch 32 --ps-sync-warmup 0.5 --no-progress --json ${OUT}.json
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "train_demo exited with ${rc}")
endif()
file(READ ${OUT}.json json)
string(JSON warmup GET "${json}" config ps_sync_warmup_epochs)
if(NOT warmup EQUAL 0.5)
  message(FATAL_ERROR "config.ps_sync_warmup_epochs is ${warmup}, expected 0.5")
endif()
string(JSON mode GET "${json}" modes 0 mode)
string(JSON switch GET "${json}" modes 0 ps_switch_step)
string(JSON sync_updates GET "${json}" modes 0 ps_sync_updates)
string(JSON updates GET "${json}" modes 0 ps_updates)
string(JSON acc GET "${json}" modes 0 test_accuracy)
# 2 epochs x 31 steps; steps [0, 16) sync (16 updates), [16, 62) SSP (2 pushes each).
if(NOT mode STREQUAL "hybrid" OR NOT switch EQUAL 16 OR NOT sync_updates EQUAL 16
   OR NOT updates EQUAL 108)
  message(FATAL_ERROR "${mode}: switch to SSP at step ${switch}, ${sync_updates} sync updates, "
                      "${updates} updates in all; expected hybrid, 16, 16, 108")
endif()
if(acc LESS 40 OR acc GREATER 100)
  message(FATAL_ERROR "hybrid with a sync start reached ${acc}% (expected 40..100)")
endif()
message(STATUS "hybrid: sync for steps [0, ${switch}), then SSP; ${updates} updates, ${acc}%")
