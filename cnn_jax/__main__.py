from cnn_jax.cli import main

raise SystemExit(main())
