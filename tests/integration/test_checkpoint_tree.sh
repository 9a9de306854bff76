#!/usr/bin/env bash
# test_checkpoint with the tree mechanism: the node keys never leave the
# process, the restart begins a new tree and ε never goes down.
VEIL_MECHANISM=tree exec bash "$(dirname "$0")/test_checkpoint.sh"
