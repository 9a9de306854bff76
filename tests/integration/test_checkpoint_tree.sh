#!/usr/bin/env bash
# test_checkpoint with the tree mechanism: its node keys are checkpointed
# sealed under the host key and the tree continues after a restart.
VEIL_MECHANISM=tree exec bash "$(dirname "$0")/test_checkpoint.sh"
