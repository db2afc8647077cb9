"""efm_sim (the sim/ folder): MuJoCo LanguageTable and Aloha environments, scripted oracles and the sim
node that speaks the hardware's topics. Installed as the import package ``efm_sim``. Built by the
simulation issue."""
