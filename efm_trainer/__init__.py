"""efm_trainer: robot side (episode recorder, spool, uploader, policy sync) and learner side (datasets,
SFT, REINFORCE, learner HTTP service). Built by the Stage 1 and Stage 2 issues."""
