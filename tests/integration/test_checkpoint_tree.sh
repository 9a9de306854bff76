#!/usr/bin/env bash
# test_checkpoint with the tree mechanism: the node keys never leave the
# process, the restart begins a new tree and ε never goes down. Its steps
# are 10 ms of the clock (the default schedule, at a test's pace): the
# release at the start of a batch, through a checkpoint and a restore.
VEIL_MECHANISM=tree VEIL_STEP_S=0.01 exec bash "$(dirname "$0")/test_checkpoint.sh"
