"""``efm self-improve``: the whole two-stage recipe in simulation, in one command.

Oracle demos (cached) -> Stage 1 SFT -> ONNX export -> N simulated robots practising on the embedded
middleware, each its own process (sim, policy, reward, episode manager, trainer bridge), the learner
service on loopback running REINFORCE on their episodes -> periodic ground-truth evaluation of every new
policy version on held-out seeds -> a report (success rate against practice episodes).
"""
