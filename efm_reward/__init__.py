"""efm_reward: steps-to-go to reward and success detection (pure core) and the reward node. Built by
the Stage 2 issue."""
