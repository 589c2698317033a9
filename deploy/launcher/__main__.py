from deploy.launcher.main import main

raise SystemExit(main())
