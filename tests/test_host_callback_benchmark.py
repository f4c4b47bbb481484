"""benchmarks/host_callback_cpu_devices.py: the reproduction behind the
refusal of host minibatch OT on several CPU devices (config_utils)."""

import script_modules

HCB = script_modules.load("host_callback_cpu_devices", "benchmarks",
                          "host_callback_cpu_devices.py")


def test_classify_reads_the_value_the_abort_and_the_timeout():
  assert HCB.classify(0, "noise\nok 6.0 6.0\n", False) == ("ran", "")
  # A wrong value is an error, not 'ran' (a permutation mix-up shows).
  outcome, detail = HCB.classify(0, "ok 5.0 6.0\n", False)
  assert outcome == "error" and "5.0" in detail
  # The value line alone does not count when the process failed after it.
  assert HCB.classify(1, "ok 6.0 6.0\nboom", False) == ("error", "boom")
  abort = ("F1201 rendezvous.cc:161] [id=0] Termination timeout for `all "
           "reduce RendezvousKey{...}` of 40 seconds exceeded.\nAborted")
  assert HCB.classify(-6, abort, False) == ("hung",
                                            "XLA:CPU rendezvous timeout")
  assert HCB.classify(None, "", True) == ("hung", "passed the timeout")
  assert HCB.classify(3, "", False) == ("error", "exit 3")


def test_a_small_reading_callback_runs_on_two_cpu_devices():
  """The case's process on 2 devices with a small operand: the callback's
  permutation comes back and the gathered sum matches numpy's."""
  row = HCB.run_case(2, 8, True, timeout=120)
  assert (row["outcome"], row["devices"], row["callback"]) == (
      "ran", 2, "reads"), row
