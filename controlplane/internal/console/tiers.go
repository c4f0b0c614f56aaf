package console

import "github.com/labstack/echo/v4"

// registerTiers serves the tier pages under g.
func (c *Console) registerTiers(g *echo.Group) {}
