package console

import "github.com/labstack/echo/v4"

// registerRules serves the anomaly rule pages under g.
func (c *Console) registerRules(g *echo.Group) {}
