from mosn.cli import main

raise SystemExit(main())
