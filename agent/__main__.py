from gdos.agent.main import main

raise SystemExit(main())
